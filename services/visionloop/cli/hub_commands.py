"""Hub commands of the ``visionloop`` CLI: projects, categories, upload, datasets, models, trainings.

Connection settings come from the same environment as the nodes (``LOOP_HOST``,
``LOOP_ORGANIZATION``, ``LOOP_PROJECT``, ``LOOP_TOKEN``, ``LOOP_SSL_CERT_PATH``) and can be
overridden with options.
"""

from __future__ import annotations

import functools
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import grpc
from tqdm import tqdm

from visionloop.client import ImageItem, LoopClient
from visionloop.common.v1 import model_pb2, training_pb2
from visionloop.loop.v1 import deployment_service_pb2
from visionloop.runtime.config import ConfigError, PeerSettings, load_settings

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


def with_hub(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add connection options and pass a connected ``LoopClient`` as ``client``; gRPC errors become one line."""

    @click.option("--loop-host", help="Hub host:port [env LOOP_HOST].")
    @click.option("--org", "organization", help="Organization [env LOOP_ORGANIZATION].")
    @click.option("--project", help="Project [env LOOP_PROJECT].")
    @functools.wraps(command)
    def wrapper(loop_host: str | None, organization: str | None, project: str | None, **kwargs: Any) -> None:
        try:
            peer = load_settings(
                PeerSettings, loop_host=loop_host, loop_organization=organization, loop_project=project
            )
        except ConfigError as error:
            raise click.ClickException(str(error)) from None
        client = peer.loop_client()
        try:
            command(client=client, **kwargs)
        except grpc.RpcError as error:
            raise click.ClickException(f"{error.code().name}: {error.details()}") from None
        finally:
            client.close()

    return wrapper


@click.group()
def projects() -> None:
    """Create and list projects."""


@projects.command("create")
@click.option("--display-name", default="", help="Human-readable name.")
@with_hub
def projects_create(client: LoopClient, display_name: str) -> None:
    """Create the project given by --org/--project."""
    project = client.create_project(display_name=display_name)
    click.echo(f"created {project.ref.organization}/{project.ref.project}")


@projects.command("list")
@with_hub
def projects_list(client: LoopClient) -> None:
    """List the organization's projects."""
    for project in client.list_projects():
        click.echo(f"{project.ref.organization}/{project.ref.project}\t{project.display_name}")


@click.group()
def categories() -> None:
    """Create and list a project's categories."""


@categories.command("create")
@click.argument("name")
@click.option("--type", "type_", type=click.Choice(["box", "point", "segmentation", "classification"]), default="box")
@click.option("--color", default="", help="#rrggbb")
@with_hub
def categories_create(client: LoopClient, name: str, type_: str, color: str) -> None:
    """Add category NAME."""
    category = client.create_category(name, type_, color)
    click.echo(f"{category.id}\t{category.name}")


@categories.command("list")
@with_hub
def categories_list(client: LoopClient) -> None:
    """List categories (id, name, type)."""
    for category in client.list_categories():
        click.echo(f"{category.id}\t{category.name}\t{category.type}")


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--tag", "tags", multiple=True, help="Tag for every image (repeatable).")
@click.option("--camera-id", default="", help="Camera id for every image.")
@with_hub
def upload(client: LoopClient, folder: Path, tags: tuple[str, ...], camera_id: str) -> None:
    """Upload every JPEG/PNG under FOLDER as one batch stream, with a progress bar."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise click.ClickException(f"no .jpg, .jpeg or .png files under {folder}")

    def items() -> Iterator[ImageItem]:
        for path in files:
            yield ImageItem(path.read_bytes(), tags=tags, camera_id=camera_id, source=f"upload:{path.name}")

    added = duplicates = failed = 0
    with tqdm(total=len(files), unit="img", desc="upload", file=sys.stderr) as bar:
        for answer in client.upload_images(items()):
            if answer.error_code:
                failed += 1
                code = _CODE_NAMES.get(answer.error_code, str(answer.error_code))
                tqdm.write(f"{files[answer.sequence]}: {code}: {answer.error_message}", file=sys.stderr)
            elif answer.duplicate:
                duplicates += 1
            else:
                added += 1
            bar.update()
    click.echo(f"{added} added, {duplicates} already there, {failed} refused")
    if failed:
        sys.exit(1)


@click.command("import")
@click.argument("zip_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "format_", type=click.Choice(["coco", "yolo"]), required=True, help="Dataset format.")
@click.option("--tag", "tags", multiple=True, help="Tag for every imported image (repeatable).")
@with_hub
def import_dataset(client: LoopClient, zip_path: Path, format_: str, tags: tuple[str, ...]) -> None:
    """Import a COCO (annotations/instances_<subset>.json + images/) or YOLO (data.yaml, images/, labels/) zip.

    Subsets become tags; what is not kept is printed per item on stderr.
    """
    with tqdm(total=zip_path.stat().st_size, unit="B", unit_scale=True, desc="send", file=sys.stderr) as bar:

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

        result = client.import_dataset(zip_path, format_, tags=tags, progress=progress)
    for warning in result.warnings:
        click.echo(warning, err=True)
    click.echo(
        f"{result.images_added} images added, {result.images_duplicate} already there, "
        f"{result.images_skipped} skipped, {result.annotations_added} annotations, "
        f"{result.categories_added} categories created"
    )


@click.command("export")
@click.argument("destination", type=click.Path(path_type=Path))
@click.option("--format", "format_", type=click.Choice(["coco", "yolo"]), required=True, help="Dataset format.")
@with_hub
def export_dataset(client: LoopClient, destination: Path, format_: str) -> None:
    """Download the project's complete images and labels as a zip to DESTINATION (a file or a folder)."""
    if destination.is_dir():
        destination = destination / f"{client.ref.organization}-{client.ref.project}-{format_}.zip"
    with tqdm(unit="B", unit_scale=True, desc="receive", file=sys.stderr) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            client.export_dataset(format_, destination, progress=progress)
        except OSError as error:
            raise click.ClickException(str(error)) from None
    click.echo(f"exported {destination}")


@click.group()
def models() -> None:
    """List, upload, pin and roll back model versions."""


@models.command("list")
@click.option("--format", "format_", default="", help="Only versions available in this format.")
@with_hub
def models_list(client: LoopClient, format_: str) -> None:
    """List versions, newest first: * marks the deployed one, mAP50 is on the held-out images (- when
    never measured); a version the promotion gate held back says why."""
    deployed = client.deployment().resolved_version
    for model in client.list_models(format_):
        marker = "*" if model.version == deployed else " "
        map50 = f"{model.metrics.map50:.3f}" if model.HasField("metrics") else "-"
        held = model.promotion.state == model_pb2.PROMOTION_STATE_HELD
        gate = f"\theld: {model.promotion.reason}" if held else ""
        click.echo(f"{marker} {model.version}\t{','.join(model.formats)}\tmAP50={map50}{gate}")


@models.command("upload")
@click.argument("zip_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "format_", required=True, help="Format of the zip, e.g. onnx.")
@click.option("--version", default="", help="Add the zip as another format of this version.")
@with_hub
def models_upload(client: LoopClient, zip_path: Path, format_: str, version: str) -> None:
    """Upload a model zip (holding model.json) in chunks."""
    model = client.upload_model(zip_path, format_, version=version)
    click.echo(f"uploaded {model.version} ({model.format})")


@models.command("import")
@click.argument("export", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--deploy", is_flag=True, help="Deploy the new version at once (pin it).")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Only write the model zip here (for DETECTOR_MODEL_PATHS); nothing is uploaded.",
)
@with_hub
def models_import(client: LoopClient, export: Path, deploy: bool, output: Path | None) -> None:
    """Turn an Ultralytics ONNX export (detect, segment, classify) into a model and upload it.

    model.json comes from the export's metadata (class names, image size, stride, task) and graph
    (tensor names, batch, dynamic size); class names that match the project's categories get their ids.
    """
    from visionloop.lib.model_format import onnx_import as model_import
    from visionloop.runtime.errors import ServiceError

    try:
        if output is not None:
            info = model_import.model_info(export)
            model_import.write_zip(export, info, output)
            click.echo(f"wrote {output}: {model_import.describe(info)}")
            return
        ids = {category.name: category.id for category in client.list_categories()}
        info = model_import.model_info(export, ids)
    except ServiceError as error:
        raise click.ClickException(f"{export}: {error.message}") from None
    with tempfile.TemporaryDirectory(prefix="visionloop-import-") as folder:
        archive = model_import.write_zip(export, info, Path(folder) / "model.zip")
        model = client.upload_model(archive, "onnx")
    click.echo(f"uploaded {model.version} (onnx): {model_import.describe(info)}")
    if deploy:
        click.echo(f"deployed {client.pin(model.version).resolved_version} (pinned)")


@models.command("pin")
@click.argument("version")
@with_hub
def models_pin(client: LoopClient, version: str) -> None:
    """Deploy VERSION and stay on it."""
    click.echo(f"deployed {client.pin(version).resolved_version} (pinned)")


@models.command("follow")
@with_hub
def models_follow(client: LoopClient) -> None:
    """Always deploy the newest version."""
    click.echo(f"deployed {client.follow_latest().resolved_version or '(no model yet)'} (following latest)")


@models.command("rollback")
@with_hub
def models_rollback(client: LoopClient) -> None:
    """Restore the previous deployment target."""
    deployment = client.rollback()
    policy = "pinned" if deployment.policy == deployment_service_pb2.DEPLOYMENT_POLICY_PINNED else "following latest"
    click.echo(f"deployed {deployment.resolved_version or '(no model yet)'} ({policy})")


@click.group()
def trainings() -> None:
    """Queue and list trainings."""


@trainings.command("create")
@click.option("--variant", default="", help="Model variant the trainer builds.")
@click.option("--base-model", default="", help="Version to continue from.")
@click.option("--epochs", type=click.IntRange(1, 10_000), help="Training epochs.")
@with_hub
def trainings_create(client: LoopClient, variant: str, base_model: str, epochs: int | None) -> None:
    """Queue a training of the project."""
    spec = training_pb2.TrainingSpec(model_variant=variant, base_model_version=base_model)
    if epochs is not None:
        spec.hyperparameters.update({"epochs": epochs})
    training = client.create_training(spec)
    click.echo(f"queued training #{training.number} ({training.id})")


@trainings.command("list")
@with_hub
def trainings_list(client: LoopClient) -> None:
    """List trainings, newest first."""
    for training in client.list_trainings():
        phase = training_pb2.TrainingPhase.Name(training.phase).removeprefix("TRAINING_PHASE_").lower()
        state = training_pb2.TrainingState.Name(training.status.state).removeprefix("TRAINING_STATE_").lower()
        click.echo(f"#{training.number}\t{phase}\t{state}\t{training.result_model_version}\t{training.id}")


COMMANDS = [projects, categories, upload, import_dataset, export_dataset, models, trainings]
