"""``visionloop annotate``: the annotation queue, its ranking and pre-annotation from the terminal;
``visionloop label-studio``: the queue as a Label Studio project."""

from __future__ import annotations

import click
import grpc
import requests

from visionloop.cli.hub_commands import with_hub
from visionloop.client import LoopClient
from visionloop.loop.v1 import image_service_pb2
from visionloop.server.annotator.client import ACQUISITIONS, RANKERS, REDUCERS, AnnotatorClient
from visionloop.server.annotator.labelstudio.project import LabelStudio, LabelStudioError
from visionloop.server.annotator.labelstudio.project import sync_project as sync


@click.group()
def annotate() -> None:
    """Work through the annotation queue."""


@annotate.command("queue")
@click.option("--limit", default=20, show_default=True, help="Images to show.")
@click.option("--annotator", "annotator_host", envvar="ANNOTATOR_HOST", help="Annotator host:port, to rank first.")
@click.option("--rank", "ranker", type=click.Choice(sorted(RANKERS)), help="Re-rank with this criterion first.")
@click.option("--reducer", type=click.Choice(sorted(REDUCERS)), default="max", show_default=True)
@with_hub
def queue(client: LoopClient, limit: int, annotator_host: str | None, ranker: str | None, reducer: str) -> None:
    """List the queue, highest active-learning priority first (optionally re-ranked)."""
    if ranker is not None:
        if not annotator_host:
            raise click.UsageError("--rank needs --annotator (or ANNOTATOR_HOST)")
        ref = client.ref
        with AnnotatorClient(annotator_host, ref.organization, ref.project) as annotator:
            try:
                ranked = annotator.rank(ranker, reducer)
            except grpc.RpcError as error:
                raise click.ClickException(f"annotator: {error.code().name}: {error.details()}") from None
        click.echo(f"ranked {ranked} images by {ranker} ({reducer})", err=True)
    request = image_service_pb2.ListAnnotationQueueRequest(ref=client.ref, page_size=max(1, min(limit, 1000)))
    images = client.images.ListAnnotationQueue(request, timeout=client.timeout).images
    click.echo(f"{'priority':>9}  {'detections':>10}  {'annotations':>11}  image")
    for image in images[:limit]:
        click.echo(f"{image.priority:9.4f}  {image.detection_count:10d}  {image.annotation_count:11d}  {image.id}")


@annotate.command("select")
@click.argument("budget", type=click.IntRange(1, 10_000))
@click.option("--annotator", "annotator_host", envvar="ANNOTATOR_HOST", required=True, help="Annotator host:port.")
@click.option(
    "--acquisition", type=click.Choice(list(ACQUISITIONS)), default="balanced", show_default=True, help="How to pick."
)
@click.option(
    "--score-threshold",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Run the deployed model on the candidates down to this score (0: the detections they arrived with).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --acquisition random.")
@with_hub
def select(
    client: LoopClient, budget: int, annotator_host: str, acquisition: str, score_threshold: float, seed: int
) -> None:
    """Spend a label budget: pick BUDGET inbox images for the annotation queue, in the order to label them."""
    ref = client.ref
    with AnnotatorClient(annotator_host, ref.organization, ref.project) as annotator:
        try:
            answer = annotator.select(budget, acquisition, score_threshold, seed)
        except grpc.RpcError as error:
            raise click.ClickException(f"annotator: {error.code().name}: {error.details()}") from None
    click.echo(f"picked {len(answer.selected)} of {answer.candidates} inbox images ({acquisition})", err=True)
    click.echo(f"{'priority':>9}  {'uncertainty':>11}  image")
    for image in answer.selected:
        click.echo(f"{image.priority:9.4f}  {image.uncertainty:11.4f}  {image.image_id}")


@click.group("label-studio")
def label_studio() -> None:
    """Annotate the queue in Label Studio (see docs/annotator.md)."""


@label_studio.command("sync-project")
@click.option("--url", envvar="LABEL_STUDIO_URL", required=True, help="Label Studio's URL [env LABEL_STUDIO_URL].")
@click.option(
    "--api-key",
    envvar="LABEL_STUDIO_API_KEY",
    required=True,
    help="A Label Studio user's access token (Account & Settings) [env LABEL_STUDIO_API_KEY].",
)
@click.option(
    "--bridge-url",
    envvar="LABEL_STUDIO_BRIDGE_URL",
    required=True,
    help="The annotator's bridge as Label Studio's server reaches it [env LABEL_STUDIO_BRIDGE_URL].",
)
@click.option(
    "--bridge-token",
    envvar="LABEL_STUDIO_BRIDGE_TOKEN",
    required=True,
    help="The bridge's credential (the annotator's LABEL_STUDIO_BRIDGE_TOKEN) [env LABEL_STUDIO_BRIDGE_TOKEN].",
)
@click.option(
    "--image-url",
    envvar="LABEL_STUDIO_IMAGE_URL",
    default="",
    help="The bridge as annotators' browsers reach it, for image URLs (default: --bridge-url).",
)
@click.option("--title", default="", help="Project title (default: VisionLoop <org>/<project>).")
@click.option("--url-days", type=click.IntRange(1, 3650), default=30, show_default=True, help="Image URLs' lifetime.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=10_000, show_default=True, help="Images at most.")
@with_hub
def sync_project(
    client: LoopClient,
    url: str,
    api_key: str,
    bridge_url: str,
    bridge_token: str,
    image_url: str,
    title: str,
    url_days: int,
    limit: int,
) -> None:
    """Create or update the Label Studio project of the hub project: labelling config, the bridge as
    ML backend and webhook, the queue's images as tasks in active-learning order, predictions."""
    studio = LabelStudio(url, api_key)
    try:
        synced = sync(
            client,
            studio,
            bridge_url=bridge_url,
            bridge_token=bridge_token,
            image_base_url=image_url,
            title=title,
            url_ttl_seconds=url_days * 24 * 3600,
            limit=limit,
        )
    except (LabelStudioError, requests.RequestException) as error:
        raise click.ClickException(f"Label Studio: {error}") from None
    finally:
        studio.close()
    verb = "created" if synced.created else "updated"
    click.echo(
        f"{verb} Label Studio project {synced.project_id}: {synced.tasks_total} tasks "
        f"({synced.tasks_added} new, {synced.tasks_reordered} re-queued), predictions for {synced.predictions}"
    )
    click.echo(f"{url.rstrip('/')}/projects/{synced.project_id}/data")
