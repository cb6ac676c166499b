"""Upload endpoints."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from media.thumbnails import THUMBNAIL_SIZE, make_thumbnail

UPLOADS = Path("/srv/uploads")


async def thumbnail(request: web.Request) -> web.Response:
    image_id = request.match_info["image_id"]
    if not image_id.isalnum():
        raise web.HTTPBadRequest()
    size = request.query.get("size", THUMBNAIL_SIZE)
    source = UPLOADS / f"{image_id}.png"
    target = UPLOADS / "thumbs" / f"{image_id}.png"
    make_thumbnail(source, target, size)
    return web.FileResponse(target)
