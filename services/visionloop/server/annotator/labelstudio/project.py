"""A Label Studio project from a VisionLoop project, in one step, through Label Studio's HTTP API.

``sync_project`` creates the project (or updates the one of the same title): the labelling config
from the hub's categories, the bridge as ML backend (basic auth, interactive for smart tools),
the bridge's webhook with its credential, one task per queued image in active-learning order
with a signed image URL served by the bridge, and predictions retrieved for every task.
Running it again updates all of that: new images are added, unannotated tasks are put back in
the queue's order with fresh URLs, and predictions of a newly deployed model are fetched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import requests

from visionloop.client.loop import LoopClient
from visionloop.common.v1 import image_pb2
from visionloop.loop.v1 import image_service_pb2, project_service_pb2
from visionloop.server.annotator.labelstudio import regions, urls

TIMEOUT = 120.0
QUEUED = (image_pb2.IMAGE_STATE_INBOX, image_pb2.IMAGE_STATE_ANNOTATE)
ML_TITLE = "VisionLoop"
BRIDGE_USER = "labelstudio"
WEBHOOK_ACTIONS = "all"


class LabelStudioError(Exception):
    """Label Studio refused a call; the message names the call and Label Studio's answer."""


@dataclass(frozen=True)
class Synced:
    project_id: int
    created: bool
    tasks_added: int
    tasks_reordered: int
    tasks_total: int
    predictions: int


class LabelStudio:
    """Label Studio's API with a user's access token (legacy ``Token`` or personal ``Bearer`` JWT)."""

    def __init__(self, url: str, token: str, timeout: float = TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.timeout = timeout
        self._token = token
        self.session.headers["Authorization"] = f"Token {token}"

    def close(self) -> None:
        self.session.close()

    def _authorise(self) -> None:
        """A personal access token is a refresh token: trade it for an access token."""
        answer = self.session.post(f"{self.url}/api/token/refresh", json={"refresh": self._token}, timeout=self.timeout)
        if answer.status_code != 200:
            raise LabelStudioError(f"Label Studio refused the API token ({answer.status_code}): {answer.text[:300]}")
        self.session.headers["Authorization"] = f"Bearer {answer.json()['access']}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.session.request(method, f"{self.url}{path}", timeout=self.timeout, **kwargs)
        auth = self.session.headers["Authorization"]
        if answer.status_code == 401 and isinstance(auth, str) and auth.startswith("Token "):
            self._authorise()
            answer = self.session.request(method, f"{self.url}{path}", timeout=self.timeout, **kwargs)
        if answer.status_code >= 400:
            raise LabelStudioError(f"{method} {path}: {answer.status_code} {answer.text[:500]}")
        return answer.json() if answer.content else None

    def pages(self, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            answer = self.call("GET", path, params={**params, "page": page, "page_size": 1000})
            items = answer if isinstance(answer, list) else answer.get(key, [])
            found.extend(items)
            if isinstance(answer, list) or not answer.get("next") or not items:
                return found
            page += 1


def queue(
    client: LoopClient, states: Sequence[image_pb2.ImageState] = QUEUED, limit: int = 100_000
) -> list[image_pb2.ImageMetadata]:
    """The images awaiting annotation, highest active-learning priority first."""
    found: list[image_pb2.ImageMetadata] = []
    token = ""
    while len(found) < limit:
        request = image_service_pb2.ListImagesRequest(
            ref=client.ref,
            filter=image_service_pb2.ImageFilter(states=list(states)),
            order=image_service_pb2.IMAGE_ORDER_PRIORITY,
            page_size=min(1000, limit - len(found)),
            page_token=token,
        )
        page = client.images.ListImages(request, timeout=client.timeout)
        found.extend(page.images)
        token = page.next_page_token
        if not token:
            break
    return found


def _categories(client: LoopClient) -> list[Any]:
    request = project_service_pb2.ListCategoriesRequest(ref=client.ref)
    return list(client.projects.ListCategories(request, timeout=client.timeout).categories)


def sync_project(
    client: LoopClient,
    studio: LabelStudio,
    *,
    bridge_url: str,
    bridge_token: str,
    image_base_url: str = "",
    title: str = "",
    url_ttl_seconds: int = 30 * 24 * 3600,
    limit: int = 100_000,
) -> Synced:
    """Create or update the Label Studio project of the client's hub project (see the module)."""
    ref = client.ref
    title = title or f"VisionLoop {ref.organization}/{ref.project}"
    categories = _categories(client)
    if not any(c.type in regions.KINDS for c in categories):
        raise LabelStudioError(f"{ref.organization}/{ref.project} has no box, point or segmentation category yet")
    config = regions.label_config(categories)
    settings = {
        "title": title,
        "label_config": config,
        "description": f"Annotation queue of VisionLoop project {ref.organization}/{ref.project}",
        "sampling": "Sequential sampling",
        "show_collab_predictions": True,
        "evaluate_predictions_automatically": True,
    }
    existing = [p for p in studio.pages("/api/projects", "results", title=title) if p.get("title") == title]
    if existing:
        project_id = int(existing[0]["id"])
        studio.call("PATCH", f"/api/projects/{project_id}", json=settings)
    else:
        project_id = int(studio.call("POST", "/api/projects", json=settings)["id"])
    _connect_bridge(studio, project_id, bridge_url.rstrip("/"), bridge_token)
    added, reordered, total = _sync_tasks(
        client, studio, project_id, image_base_url or bridge_url, bridge_token, url_ttl_seconds, limit
    )
    predicted = studio.call(
        "POST",
        "/api/dm/actions",
        params={"id": "retrieve_tasks_predictions", "project": project_id},
        json={"selectedItems": {"all": True, "excluded": []}},
    )
    return Synced(project_id, not existing, added, reordered, total, int((predicted or {}).get("processed_items", 0)))


def _connect_bridge(studio: LabelStudio, project_id: int, bridge_url: str, token: str) -> None:
    backend = {
        "url": bridge_url,
        "project": project_id,
        "title": ML_TITLE,
        "is_interactive": True,
        "auth_method": "BASIC_AUTH",
        "basic_auth_user": BRIDGE_USER,
        "basic_auth_pass": token,
    }
    backends = studio.call("GET", "/api/ml", params={"project": project_id}) or []
    mine = [b for b in backends if b.get("url", "").rstrip("/") == bridge_url]
    if mine:
        studio.call("PATCH", f"/api/ml/{mine[0]['id']}", json=backend)
    else:
        studio.call("POST", "/api/ml", json=backend)
    # Label Studio adds a webhook to the ML backend's /webhook without credentials: give it the header.
    hook = {
        "project": project_id,
        "url": f"{bridge_url}/webhook",
        "send_payload": True,
        "send_for_all_actions": True,
        "headers": {"Authorization": f"Bearer {token}"},
        "is_active": True,
    }
    hooks = studio.call("GET", "/api/webhooks", params={"project": project_id}) or []
    ours = [h for h in hooks if h.get("url", "").rstrip("/") == hook["url"]]
    if ours:
        studio.call("PATCH", f"/api/webhooks/{ours[0]['id']}", json=hook)
        for extra in ours[1:]:
            studio.call("DELETE", f"/api/webhooks/{extra['id']}")
    else:
        studio.call("POST", "/api/webhooks", json=hook)


def _sync_tasks(
    client: LoopClient, studio: LabelStudio, project_id: int, base: str, token: str, ttl: int, limit: int
) -> tuple[int, int, int]:
    """Add the queue's new images; put unannotated tasks back in the queue's order (fresh URLs)."""
    queued = queue(client, limit=limit)
    order = {image.id: index for index, image in enumerate(queued)}
    tasks = studio.pages("/api/tasks", "tasks", project=project_id, fields="all")
    by_image: dict[str, dict[str, Any]] = {}
    for task in tasks:
        image = (task.get("data") or {}).get("image_id")
        if isinstance(image, str):
            by_image[image] = task
    pending = sorted(
        (t for t in tasks if not t.get("total_annotations") and not t.get("cancelled_annotations")),
        key=lambda t: int(t["id"]),
    )
    pending_images = [t["data"].get("image_id") for t in pending]
    in_order = [i for i in pending_images if i in order] == sorted(
        (i for i in pending_images if i in order), key=order.__getitem__
    )
    # Tasks in Label Studio keep their ids: the queue's order is the order they were created in.
    # Unannotated tasks out of order, or of images no longer queued, are created anew.
    stale = [t for t in pending if t["data"].get("image_id") not in order]
    redo = [] if in_order else [t for t in pending if t["data"].get("image_id") in order]
    for task in stale + redo:
        studio.call("DELETE", f"/api/tasks/{task['id']}")
        by_image.pop(task["data"].get("image_id"), None)
    for task in pending:
        image_id = task["data"].get("image_id")
        if image_id in by_image and image_id in order:  # kept: a fresh URL before the old one expires
            data = {**task["data"], "image": urls.image_url(base, token, image_id, ttl)}
            studio.call("PATCH", f"/api/tasks/{task['id']}", json={"data": data})
    new = [image for image in queued if image.id not in by_image]
    if new:
        studio.call(
            "POST",
            f"/api/projects/{project_id}/import",
            params={"commit_to_project": "true"},
            json=[
                {
                    "data": {
                        "image": urls.image_url(base, token, image.id, ttl),
                        "image_id": image.id,
                        "priority": image.priority,
                    }
                }
                for image in new
            ],
        )
    return len(new) - len(redo), len(redo), len(by_image) + len(new)
