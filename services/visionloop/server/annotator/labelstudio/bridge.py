"""What the bridge does for Label Studio, over the hub and the annotator's own tools.

- ``setup``: the deployed model version (Label Studio asks again for predictions of a new one).
- ``predict``: per task, the deployed model's detections stored on the hub, else the deployed
  model run on the image now (and stored), else the newest stored detections; labelled with the
  version that made them. A task that fails gets an error entry; the others their predictions.
- ``interactive``: a smart tool's clicks or box, segmented by the annotator's backend (SAM when
  configured, else classical), answered as one region for the clicked object.
- ``webhook``: annotations created, updated and deleted in Label Studio become the same hub
  annotations, one per region, kept one to one through ``Store``; submitting completes the image,
  skipping sends it to review, deleting the last annotation returns it to the queue.
- ``train``: queues a hub training that continues from the deployed model.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from visionloop.common.v1 import annotation_pb2, category_pb2, detection_pb2, image_pb2, training_pb2
from visionloop.lib import images
from visionloop.loop.v1 import project_service_pb2
from visionloop.runtime.errors import FailedPrecondition, NotFound, ServiceError
from visionloop.runtime.logging import get_logger
from visionloop.server.annotator import masks
from visionloop.server.annotator.hub_client import AnnotatorHub
from visionloop.server.annotator.labelstudio import regions
from visionloop.server.annotator.labelstudio.regions import Config, Refused
from visionloop.server.annotator.labelstudio.store import Store
from visionloop.server.annotator.preannotate import DeployedModel
from visionloop.server.annotator.prompts import BoxPrompt, Click, Item, Prompts
from visionloop.server.annotator.service import Backend, decode
from visionloop.server.annotator.sessions import PreparedImage

log = get_logger(__name__)
_IMAGE_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
NO_MODEL = "none"
PREPARED_CACHE = 8
CREATOR = "labelstudio"


def image_id(task: Mapping[str, Any]) -> str:
    """The hub image a task shows: ``data.image_id``, else the 64-hex id in one of its data values."""
    data = task.get("data")
    if not isinstance(data, dict):
        raise Refused(f"task {task.get('id')}: data must be an object")
    given = data.get("image_id")
    if isinstance(given, str) and _IMAGE_ID.fullmatch(given):
        return given
    for value in data.values():
        if isinstance(value, str) and (match := _IMAGE_ID.search(value)):
            return match.group(0)
    raise Refused(f"task {task.get('id')} names no hub image: add data.image_id (the image's sha256)")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else -1 for part in version.split("."))


def _split(detections: detection_pb2.Detections) -> dict[str, detection_pb2.Detections]:
    by_version: dict[str, detection_pb2.Detections] = {}
    for field in ("boxes", "points", "segmentations"):
        for item in getattr(detections, field):
            getattr(by_version.setdefault(item.model_version, detection_pb2.Detections()), field).append(item)
    return by_version


class Bridge:
    def __init__(
        self,
        hub: AnnotatorHub,
        ref: project_service_pb2.ProjectRef,
        store: Store,
        deployed: DeployedModel | None,
        backends: Mapping[str, Backend],
        limits: images.Limits,
    ) -> None:
        self.hub = hub
        self.ref = ref
        self.store = store
        self.deployed = deployed
        self.backends = backends
        self.limits = limits
        self.label_config = ""  # the project's config as /setup last gave it
        self._write = asyncio.Lock()  # webhooks of one annotation must not interleave
        self._prepared: OrderedDict[tuple[str, str], PreparedImage] = OrderedDict()

    # --- model version, predictions ---------------------------------------------------------

    async def model_version(self) -> str:
        return await self.hub.deployed_version(self.ref) or NO_MODEL

    async def setup(self, schema: str) -> dict[str, Any]:
        if schema:
            Config.parse(schema)  # refuse a config that does not parse now, not at the first task
            self.label_config = schema
        return {"model_version": await self.model_version()}

    async def _categories(self) -> dict[str, category_pb2.Category]:
        return {category.name: category for category in await self.hub.categories(self.ref)}

    async def predict(self, tasks: list[dict[str, Any]], label_config: str) -> list[Any]:
        config = Config.parse(label_config or self.label_config)
        labels = set(await self._categories())
        deployed = await self.hub.deployed_version(self.ref)
        results: list[Any] = []
        for task in tasks:
            try:
                results.append(await self._predict(task, config, labels, deployed))
            except (Refused, ServiceError) as error:
                log.info("label studio task without prediction", task=task.get("id"), error=str(error))
                results.append({"task": task.get("id"), "error": str(error)})
        return results

    async def _predict(self, task: dict[str, Any], config: Config, labels: set[str], deployed: str) -> Any:
        hub_id = image_id(task)
        metadata = await self.hub.metadata(self.ref, hub_id)
        version, detections = await self._detections(hub_id, deployed)
        if not version:
            return []  # nothing has predicted this image yet: Label Studio asks again later
        found = regions.predictions(detections, config, labels, metadata.width, metadata.height)
        score = min((r["score"] for r in found), default=1.0)
        return {"result": found, "score": score, "model_version": version}

    async def _detections(self, hub_id: str, deployed: str) -> tuple[str, detection_pb2.Detections]:
        """The detections to show and the version that made them ("" when none has)."""
        stored = _split(await self.hub.detections(self.ref, hub_id))
        if deployed and deployed in stored:
            return deployed, stored[deployed]
        if deployed and self.deployed is not None:
            try:
                model = await self.deployed.get(self.ref)
            except FailedPrecondition as error:  # e.g. no ONNX format yet: fall back to stored detections
                log.info("deployed model not usable for predictions", error=str(error))
            else:
                _, data = await self.hub.image(self.ref, hub_id)
                found = await self.deployed.detect(model, data)
                await self.hub.put_detections(self.ref, hub_id, found)
                return model.version, found
        if stored:
            newest = max(stored, key=_version_key)
            return newest, stored[newest]
        return "", detection_pb2.Detections()

    # --- smart tools --------------------------------------------------------------------------

    async def interactive(self, task: dict[str, Any], context: dict[str, Any], label_config: str) -> dict[str, Any]:
        config = Config.parse(label_config or self.label_config)
        prompts = context.get("result")
        if not isinstance(prompts, list) or not prompts:
            raise Refused("params.context.result must list the smart tool's keypoints or rectangle")
        hub_id = image_id(task)
        metadata = await self.hub.metadata(self.ref, hub_id)
        width, height = metadata.width, metadata.height
        items: list[Item] = []
        labels: list[str] = []
        for index, prompt in enumerate(prompts):
            if not isinstance(prompt, dict) or not isinstance(prompt.get("value"), dict):
                raise Refused(f"context.result[{index}] must be a region with a value")
            kind = str(prompt.get("type", "")).lower()
            value = prompt["value"]
            labels += [label for label in value.get(kind) or [] if isinstance(label, str)]
            shape = regions.to_geometry(f"context.result[{index}]", kind, value, width, height)
            if shape.HasField("point"):
                x, y = min(shape.point.x, width - 1e-3), min(shape.point.y, height - 1e-3)
                items.append(Click(x, y, bool(prompt.get("is_positive", True))))
            elif shape.HasField("box"):
                b = shape.box
                items.append(BoxPrompt(b.x, b.y, b.x + b.width, b.y + b.height))
            else:
                raise Refused(f"context.result[{index}]: smart tools prompt with keypoints or rectangles")
        if not labels:
            raise Refused("the smart tool's prompt has no label: pick the object's label first")
        category = (await self._categories()).get(labels[-1])
        if category is None:
            raise Refused(f"label {labels[-1]!r} is no category of the project")
        backend_name = "sam" if "sam" in self.backends else "classical"
        prepared = await self._prepare(backend_name, hub_id)
        result = await asyncio.to_thread(prepared.segment, Prompts.of(items))
        region = self._object_region(config, category, result.mask, width, height)
        return {"result": [region] if region else [], "score": float(result.score), "model_version": backend_name}

    async def _prepare(self, backend_name: str, hub_id: str) -> PreparedImage:
        key = (backend_name, hub_id)
        prepared = self._prepared.get(key)
        if prepared is None:
            _, data = await self.hub.image(self.ref, hub_id)
            pixels = await asyncio.to_thread(decode, data, self.limits)
            prepared = await asyncio.to_thread(self.backends[backend_name], hub_id, pixels)
            self._prepared[key] = prepared
            while len(self._prepared) > PREPARED_CACHE:
                self._prepared.popitem(last=False)
        self._prepared.move_to_end(key)
        return prepared

    @staticmethod
    def _object_region(
        config: Config, category: category_pb2.Category, mask: np.ndarray, width: int, height: int
    ) -> dict | None:
        if not mask.any():
            return None
        name = category.name
        if category.type == category_pb2.CATEGORY_TYPE_BOX:
            value = regions.box_value(masks.box(mask), width, height)
            return regions.region(config, regions.RECTANGLE, width, height, name, value)
        if category.type == category_pb2.CATEGORY_TYPE_POINT:
            value = regions.point_value(masks.centre(mask), width, height)
            return regions.region(config, regions.KEYPOINT, width, height, name, value)
        if category.type == category_pb2.CATEGORY_TYPE_SEGMENTATION:
            if config.output(regions.BRUSH) is not None:
                return regions.region(config, regions.BRUSH, width, height, name, regions.brush_value(mask))
            value = regions.polygon_value(masks.polygon(mask), width, height)
            return regions.region(config, regions.POLYGON, width, height, name, value)
        raise Refused(f"{name!r} labels whole images; smart tools outline objects")

    # --- annotations --------------------------------------------------------------------------

    async def sync(
        self, project: Any, annotation: Mapping[str, Any], task: Mapping[str, Any], label_config: str
    ) -> dict[str, Any]:
        """Make the hub hold exactly this Label Studio annotation's regions (all or nothing)."""
        instance = _instance(project)
        number = int(annotation["id"])
        task_id = int(task.get("id") or annotation.get("task") or 0)
        hub_id = image_id(task)
        cancelled = bool(annotation.get("was_cancelled"))
        prompts = Config.parse(label_config or self.label_config).prompts()
        async with self._write:
            metadata = await self.hub.metadata(self.ref, hub_id)
            wanted = (
                []
                if cancelled
                else regions.to_shapes(
                    annotation.get("result", []), await self._categories(), prompts, metadata.width, metadata.height
                )
            )
            author = annotation.get("completed_by")
            if isinstance(author, dict):
                author = author.get("email") or author.get("id")
            person = f"{CREATOR}:{author}" if author else CREATOR
            known = await asyncio.to_thread(self.store.regions, instance, number)
            written = await self._apply(hub_id, person, known, wanted)
            await asyncio.to_thread(self.store.save, instance, number, task_id, hub_id, written)
            state = image_pb2.IMAGE_STATE_REVIEW if cancelled else image_pb2.IMAGE_STATE_COMPLETE
            if cancelled and await asyncio.to_thread(self.store.others_on_image, instance, number, hub_id) > 0:
                state = metadata.state  # a skip does not undo another person's submitted annotation
            else:
                await self.hub.set_state(self.ref, hub_id, state)
        return {
            "status": "ok",
            "annotation": number,
            "image_id": hub_id,
            "hub_annotations": sorted(written.values()),
            "image_state": image_pb2.ImageState.Name(state).removeprefix("IMAGE_STATE_").lower(),
        }

    async def _apply(
        self, hub_id: str, person: str, known: dict[str, str], wanted: list[regions.Shape]
    ) -> dict[str, str]:
        """Create, update and delete hub annotations so that they match ``wanted``; on a refusal,
        undo what was done and raise."""
        before = {a.id: a for a in await self.hub.list_annotations(self.ref, hub_id)}
        creator = annotation_pb2.Creator(person=person)
        created: list[str] = []
        updated: list[str] = []
        written: dict[str, str] = {}
        try:
            for item in wanted:
                message = annotation_pb2.Annotation(
                    image_id=hub_id, category_id=item.category.id, shape=item.shape, creator=creator
                )
                existing = known.get(item.region_id)
                if existing in before:
                    message.id = existing
                    written[item.region_id] = (await self.hub.update_annotation(self.ref, message)).id
                    updated.append(existing)
                else:
                    stored = await self.hub.create_annotation(self.ref, message)
                    written[item.region_id] = stored.id
                    created.append(stored.id)
        except ServiceError:
            await self._undo(created, [before[i] for i in updated])
            raise
        for region_id, old in known.items():
            if region_id not in written and old in before:
                with contextlib.suppress(NotFound):  # deleted on the hub meanwhile
                    await self.hub.delete_annotation(self.ref, old)
        return written

    async def _undo(self, created: list[str], updated: list[annotation_pb2.Annotation]) -> None:
        for annotation_id in created:
            try:
                await self.hub.delete_annotation(self.ref, annotation_id)
            except ServiceError as error:
                log.warning("could not undo a label studio write", annotation=annotation_id, error=str(error))
        for old in updated:
            restore = annotation_pb2.Annotation(
                id=old.id, category_id=old.category_id, shape=old.shape, crowd=old.crowd, creator=old.creator
            )
            try:
                await self.hub.update_annotation(self.ref, restore)
            except ServiceError as error:
                log.warning("could not undo a label studio write", annotation=old.id, error=str(error))

    async def delete(self, project: Any, numbers: list[int]) -> dict[str, Any]:
        """Label Studio deleted these annotations: delete their hub annotations; an image left without
        any Label Studio annotation goes back to the queue."""
        instance = _instance(project)
        deleted: list[str] = []
        async with self._write:
            for number in numbers:
                hub_id = await asyncio.to_thread(self.store.image, instance, number)
                if hub_id is None:
                    continue  # never written (e.g. refused), or already deleted
                for annotation_id in (await asyncio.to_thread(self.store.regions, instance, number)).values():
                    try:
                        await self.hub.delete_annotation(self.ref, annotation_id)
                        deleted.append(annotation_id)
                    except NotFound:
                        pass
                await asyncio.to_thread(self.store.forget, instance, number)
                if not await asyncio.to_thread(self.store.others_on_image, instance, number, hub_id):
                    with contextlib.suppress(NotFound):
                        await self.hub.set_state(self.ref, hub_id, image_pb2.IMAGE_STATE_ANNOTATE)
        return {"status": "ok", "deleted": sorted(deleted)}

    async def delete_tasks(self, project: Any, tasks: list[int]) -> dict[str, Any]:
        numbers = await asyncio.to_thread(self.store.of_tasks, _instance(project), tasks) if tasks else []
        return await self.delete(project, numbers)

    async def train(self) -> dict[str, Any]:
        base = await self.hub.deployed_version(self.ref)
        training = await self.hub.create_training(self.ref, training_pb2.TrainingSpec(base_model_version=base))
        return {"status": "ok", "job": training.id, "training": training.number}


def _instance(project: Any) -> str:
    """The Label Studio project a webhook came from (annotation numbers are unique within one)."""
    if isinstance(project, dict):
        project = project.get("id")
    return str(project or "")
