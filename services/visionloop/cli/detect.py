"""``visionloop detect IMAGE...``: ask a running detector what it sees, from the command line.

Images go to the detector encoded, as they are on disk, so the detector decodes them and this
command needs no image library.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import grpc

from visionloop.client import DetectorClient
from visionloop.detector.v1 import detector_service_pb2 as pb


def _round(value: float, digits: int = 2) -> float:
    return round(float(value), digits)


def detections(response: pb.DetectResponse) -> list[dict[str, Any]]:
    """Every detection of ``response`` as a plain dict (type, category, confidence, geometry)."""
    found: list[dict[str, Any]] = []
    d = response.detections
    for box in d.boxes:
        geometry = {k: _round(getattr(box.box, k)) for k in ("x", "y", "width", "height")}
        found.append(
            {"type": "box", "category": box.category_name, "confidence": _round(box.confidence, 4), "box": geometry}
        )
    for point in d.points:
        geometry = {"x": _round(point.point.x), "y": _round(point.point.y)}
        found.append(
            {
                "type": "point",
                "category": point.category_name,
                "confidence": _round(point.confidence, 4),
                "point": geometry,
            }
        )
    for seg in d.segmentations:
        geometry = {k: _round(getattr(seg.bounding_box, k)) for k in ("x", "y", "width", "height")}
        found.append(
            {
                "type": "segmentation",
                "category": seg.category_name,
                "confidence": _round(seg.confidence, 4),
                "box": geometry,
                "points": len(seg.polygon.points),
            }
        )
    for cls in d.classifications:
        found.append({"type": "classification", "category": cls.category_name, "confidence": _round(cls.confidence, 4)})
    return found


def _line(item: dict[str, Any]) -> str:
    head = f"  {item['category']:<16} {item['confidence']:.3f}  {item['type']}"
    if "box" in item:
        b = item["box"]
        return f"{head} x={b['x']:g} y={b['y']:g} w={b['width']:g} h={b['height']:g}"
    if "point" in item:
        return f"{head} x={item['point']['x']:g} y={item['point']['y']:g}"
    return head


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--detector",
    "target",
    envvar="DETECTOR_HOST",
    default="127.0.0.1:50052",
    show_default=True,
    help="Detector host:port [env DETECTOR_HOST].",
)
@click.option("--model", default="", help="Model name (default: the detector's default model).")
@click.option("--camera-id", default="", help="Camera id sent with every image.")
@click.option("--score-threshold", type=click.FloatRange(0, 1), help="Minimum confidence (default: the model's).")
@click.option(
    "--autoupload",
    type=click.Choice(["disabled", "filtered", "all"]),
    default="disabled",
    show_default=True,
    help="Whether the detector may send these images to the hub for active learning.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
@click.option("--token", envvar="DETECTOR_TOKEN", help="Bearer token [env DETECTOR_TOKEN].")
@click.option(
    "--ca",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="DETECTOR_CA",
    help="CA certificate (PEM) of the detector; turns TLS on [env DETECTOR_CA].",
)
@click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True, help="Seconds per image.")
def detect(
    images: tuple[Path, ...],
    target: str,
    model: str,
    camera_id: str,
    score_threshold: float | None,
    autoupload: str,
    as_json: bool,
    token: str | None,
    ca: Path | None,
    timeout: float,
) -> None:
    """Run the detector on IMAGE files (JPEG/PNG) and print what it found."""
    results: list[dict[str, Any]] = []
    with DetectorClient(target, token=token or None, root_certificates=ca, timeout=timeout) as client:
        for path in images:
            try:
                response = client.detect(
                    path.read_bytes(),
                    model=model,
                    camera_id=camera_id,
                    score_threshold=score_threshold,
                    autoupload=autoupload,
                )
            except grpc.RpcError as error:
                code = error.code()
                details = " ".join(str(error.details() or "").split())  # one line
                raise click.ClickException(f"{path}: {code.name}: {details}") from None
            found = detections(response)
            if as_json:
                results.append(
                    {
                        "image": str(path),
                        "model": response.model,
                        "model_version": response.model_version,
                        "width": response.image_width,
                        "height": response.image_height,
                        "detections": found,
                    }
                )
                continue
            click.echo(
                f"{path}: {len(found)} detection{'s' if len(found) != 1 else ''} "
                f"({response.image_width}x{response.image_height}, model {response.model} {response.model_version})"
            )
            for item in found:
                click.echo(_line(item))
    if as_json:
        click.echo(json.dumps(results, indent=2))
