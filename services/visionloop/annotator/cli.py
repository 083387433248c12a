"""``visionloop annotate``: the annotation queue, its ranking and pre-annotation from the terminal."""

from __future__ import annotations

import click
import grpc

from visionloop.annotator.client import RANKERS, REDUCERS, AnnotatorClient
from visionloop.client import LoopClient
from visionloop.hub_commands import with_hub
from visionloop.loop.v1 import image_service_pb2


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
