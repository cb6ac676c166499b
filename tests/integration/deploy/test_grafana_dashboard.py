"""deploy/grafana/auto-review.json is a well-formed dashboard: unique panel ids, panels that
do not overlap on Grafana's 24-column grid, every query on the dashboard's datasource
variable and filtered by its instance variable. (Its metric names: test_deploy_metrics.py.)"""

from __future__ import annotations

import json
from typing import Any

from tests.support.deploy_metrics import DEPLOY

GRID_COLUMNS = 24


def dashboard() -> dict[str, Any]:
    board: dict[str, Any] = json.loads(
        (DEPLOY / "grafana" / "auto-review.json").read_text(encoding="utf-8")
    )
    return board


def cells(panel: dict[str, Any]) -> set[tuple[int, int]]:
    grid = panel["gridPos"]
    return {(grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])}


def test_panel_ids_are_unique_and_panels_fit_without_overlap() -> None:
    panels = dashboard()["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    taken: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= GRID_COLUMNS, panel["title"]
        for cell in cells(panel):
            assert cell not in taken, (panel["title"], taken.get(cell))
            taken[cell] = panel["title"]


def test_every_query_uses_the_datasource_and_instance_variables() -> None:
    board = dashboard()
    variables = {variable["name"] for variable in board["templating"]["list"]}
    assert {"datasource", "instance"} <= variables
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert 'instance=~"$instance"' in target["expr"], (panel["title"], target["expr"])
