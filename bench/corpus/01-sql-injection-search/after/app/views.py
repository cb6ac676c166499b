"""HTTP handlers of the admin console."""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, request

from app.db import get_connection
from app.users import find_user, search_users

admin = Blueprint("admin", __name__, url_prefix="/admin")


@admin.get("/users/<int:user_id>")
def show_user(user_id: int):
    user = find_user(get_connection(), user_id)
    if user is None:
        abort(404)
    return jsonify(id=user.id, name=user.name, email=user.email)


@admin.get("/users")
def list_users():
    fragment = request.args.get("q", "")
    users = search_users(get_connection(), fragment)
    return jsonify([{"id": u.id, "name": u.name, "email": u.email} for u in users])
