"""A small generated ONNX pair with SAM's encoder and decoder signature.

The "encoder" keeps the 64x64 average colour of the normalised image in the first three of its
256 embedding channels; the "decoder" marks the cells whose colour is close to the colour under the
first positive click (or the box centre), at 256 (``low_res_masks``) and 1024 (``masks``), in the
padded 1024 frame, so the service has to bring the mask back to the original size itself.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional


class Encoder(nn.Module):
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        colour = functional.avg_pool2d(image, 16)  # [1, 3, 64, 64]
        return torch.cat([colour, torch.zeros(1, 253, 64, 64)], dim=1)


class Decoder(nn.Module):
    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        orig_im_size: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        labels = point_labels[0]
        coords = point_coords[0]
        positive = (labels == 1).float()
        corners = (labels >= 2).float()
        # Seed: the first positive click, else the mean of the box corners.
        first = torch.argmax(positive)
        has_click = positive.max()
        box_centre = (coords * corners[:, None]).sum(0) / corners.sum().clamp(min=1.0)
        seed = has_click * coords[first] + (1 - has_click) * box_centre
        cell = torch.clamp((seed / 16).long(), 0, 63)
        colour = image_embeddings[0, :3, cell[1], cell[0]]
        distance = ((image_embeddings[0, :3] - colour[:, None, None]) ** 2).sum(0).sqrt()
        logits = (
            (0.8 - distance)[None, None] + 0 * mask_input.mean() + 0 * has_mask_input.sum() + 0 * orig_im_size.sum()
        )
        low_res = functional.interpolate(logits, size=(256, 256), mode="bilinear", align_corners=False)
        masks = functional.interpolate(logits, size=(1024, 1024), mode="bilinear", align_corners=False)
        score = torch.sigmoid(logits).mean().reshape(1, 1)
        return masks, score, low_res


def export(folder: Path) -> tuple[Path, Path]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter keeps the names we give
        return _export(folder)


def _export(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    encoder, decoder = folder / "sam_encoder.onnx", folder / "sam_decoder.onnx"
    torch.onnx.export(
        Encoder(),
        (torch.zeros(1, 3, 1024, 1024),),
        str(encoder),
        input_names=["image"],
        output_names=["image_embeddings"],
        opset_version=17,
        dynamo=False,
    )
    inputs = (
        torch.zeros(1, 256, 64, 64),
        torch.zeros(1, 2, 2),
        torch.tensor([[1.0, -1.0]]),
        torch.zeros(1, 1, 256, 256),
        torch.zeros(1),
        torch.tensor([240.0, 320.0]),
    )
    torch.onnx.export(
        Decoder(),
        inputs,
        str(decoder),
        input_names=[
            "image_embeddings",
            "point_coords",
            "point_labels",
            "mask_input",
            "has_mask_input",
            "orig_im_size",
        ],
        output_names=["masks", "iou_predictions", "low_res_masks"],
        dynamic_axes={"point_coords": {1: "points"}, "point_labels": {1: "points"}},
        opset_version=17,
        dynamo=False,
    )
    return encoder, decoder
