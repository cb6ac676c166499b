"""HTTP handlers of the admin console."""

from __future__ import annotations

from flask import Blueprint, abort, jsonify

from app.db import get_connection
from app.users import find_user

admin = Blueprint("admin", __name__, url_prefix="/admin")


@admin.get("/users/<int:user_id>")
def show_user(user_id: int):
    user = find_user(get_connection(), user_id)
    if user is None:
        abort(404)
    return jsonify(id=user.id, name=user.name, email=user.email)
