"""search.py --people: clusters judged against the labelled photos, folders reused as targets."""

from __future__ import annotations

import csv
import shutil
from collections import Counter

import pytest
from conftest import run_script

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def people_dir(faces_db, tmp_path_factory):
    out = tmp_path_factory.mktemp("people") / "people"
    db = out.parent / "faces.db"  # --people writes the people registry: a copy of the shared database
    shutil.copy(faces_db, db)
    proc = run_script("search.py", "--people", "--db", db, "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def person_faces(folder) -> list[dict]:
    with open(folder / "photos.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def identities(row, labels) -> list[str]:
    return labels[row["path"].split("/faces/", 1)[1]]["identities"]


def judge(people_dir, labels) -> dict:
    """Purity: share of faces whose photo is labelled with their cluster's identity.

    A cluster's identity is the most common label among its single-person photos
    (group photos only say who is somewhere in the picture)."""
    clusters, pure, total = {}, 0, 0
    for folder in sorted(people_dir.glob("person-*")):
        rows = person_faces(folder)
        singles = Counter(identities(r, labels)[0] for r in rows if len(identities(r, labels)) == 1)
        name = singles.most_common(1)[0][0] if singles else "unknown"
        clusters[folder.name] = name
        pure += sum(name in identities(r, labels) for r in rows)
        total += len(rows)
    split = {k: v for k, v in Counter(clusters.values()).items() if v > 1 and k != "unknown"}
    return {"purity": pure / total, "faces": total, "clusters": clusters, "split": split}


def test_clusters_are_pure(people_dir, labels):
    result = judge(people_dir, labels)
    print("people:", result)
    assert result["faces"] >= 25
    assert result["purity"] >= 0.95, result
    named = set(result["clusters"].values())
    assert {"obama", "biden", "kit_harington", "rose_leslie"} <= named
    assert "obama" not in result["split"] and "biden" not in result["split"], result
    # the largest person is the one with most photos
    assert result["clusters"]["person-001"] == "obama"


def test_person_folder_is_a_search_target(people_dir, faces_db, labels, tmp_path):
    folder = people_dir / "person-001"
    crops = sorted(folder.glob("face-*.jpg"))
    assert 1 <= len(crops) <= 8
    proc = run_script("search.py", folder, "--db", faces_db, "--out", tmp_path / "m", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "left out of the profile" not in proc.stderr  # every crop shows exactly one face
    with open(tmp_path / "m/report.csv", newline="", encoding="utf-8") as f:
        found = {r["image_id"] for r in csv.DictReader(f)}
    members = {r["image_id"] for r in person_faces(folder)}
    assert members <= found
    for row in person_faces(folder):
        assert "obama" in identities(row, labels)


def test_index_page_loads_in_chromium(people_dir, chromium):
    page = (people_dir / "index.html").read_text(encoding="utf-8")
    assert page.count("<tr>") == len(list(people_dir.glob("person-*"))) + 1
    assert "http://" not in page and "https://" not in page and "<script" not in page
    images = chromium(people_dir / "index.html")
    assert len(images) == page.count("<img ") > 0
    assert all(i["width"] > 0 for i in images), [i for i in images if i["width"] <= 0]


def test_empty_database(tmp_path):
    from facegrid import store

    store.open_db(tmp_path / "empty.db").conn.close()
    proc = run_script("search.py", "--people", "--db", tmp_path / "empty.db", "--out", tmp_path / "p")
    assert proc.returncode == 1
    assert "holds no faces" in (tmp_path / "p/index.html").read_text()
