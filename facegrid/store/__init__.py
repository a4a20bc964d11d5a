"""The SQLite database, the one owner of every table: `from facegrid import store`, then store.NAME.

One module per part: schema.py (tables, named migrations, opening), writer.py (the one
writer's lock and checks), writes.py (stored results), videos.py (tracks), reads.py,
persons.py and registry.py (the people registry), watches.py (watches and alerts).

Tables (docs/protocol.md has every column):
  images     one row per photo, keyed by the sha256 of its bytes
  faces      one row per face: box, float32 encoding BLOB, small JPEG crop
  annotated  the annotated JPEG of each photo, apart so encodings read fast
  meta       schema_version, generation (bumped by every stored batch), and
             db_id (random, made once: the search index is bound to it)
  deleted_faces  rowids of faces removed by a later result, with the generation
  videos     one row per video file: path, host, duration, fps sampled, frames
  frames     one row per sampled frame sent (its picture is an images row)
  tracks     a video's faces grouped into appearances: span and best face
  track_faces  which track each face of a frame belongs to, with its sharpness
  persons        the people registry (schema 4): one row per person, a stable id and a name
  person_faces   which person each face belongs to (facegrid/registry.py keeps it up to date)
  person_rejects faces a user said are not this person ("reject"): no update puts them back
  person_cells   coarse cells of the faces, for the registry's neighbour search at scale

Every face row carries `gen`, the generation of the batch that last wrote it, so
the search index reads only what changed since it was made (facegrid/index/).

Watched people (schema 5, facegrid/alerting.py):
  watches    a name, where the profile came from, the profile vectors and the
             tolerance the search's rule gave them
  alerts     one row per alert, keyed by watch and photo (or video): the alert
             JSON, and when it was sent (one recorded but not sent yet is sent
             when the collector starts again)
"""

from __future__ import annotations

from .persons import (
    NAME_MAX,
    PERSON_SQL,
    face_encodings,
    find_person,
    forget_person,
    get_person,
    has_registry,
    merge_persons,
    name_person,
    person_cover,
    person_encodings,
    person_faces,
    persons,
    persons_of_faces,
    printable_name,
    registry_generation,
    registry_map,
    registry_typical,
    reject_faces,
    split_person,
)
from .reads import (
    CHANGED_SQL,
    annotated_ids,
    annotated_jpeg,
    changes_since,
    counts,
    encodings_in_order,
    face_count,
    face_crop,
    face_encoding,
    face_row,
    face_rows,
    ids_starting,
    image_shape,
    people_faces,
    photo,
    photo_faces,
    problems,
    stored_status,
)
from .registry import (
    Assignment,
    RegistryChanges,
    apply_registry_update,
    copy_photos,
    encoding_digest,
    photo_persons,
    registry_cells,
    registry_changes,
    registry_counts,
    registry_members,
    set_registry_cells,
)
from .schema import (
    FACE_COLUMNS,
    IMAGE_COLUMNS,
    MIGRATIONS,
    SCHEMA_VERSION,
    db_id,
    ensure_schema,
    generation,
    get_meta,
    has_change_log,
    open_db,
    open_readonly,
)
from .videos import (
    BEST_ORDER,
    TRACK_FACE_SQL,
    face_tracks,
    has_videos,
)
from .watches import (
    WATCH_COLUMNS,
    alert_counts,
    mark_alerts_sent,
    record_alerts,
    remove_watch,
    save_watch,
    unsent_alerts,
    watch_version,
    watches,
)
from .writer import (
    BROKEN_CODES,
    READONLY_CODES,
    WriterLock,
    fatal_write_error,
    open_for_writing,
    write_problem,
)
from .writes import (
    ANNOTATED_SQL,
    BULK_FACE_SQL,
    BULK_IMAGE_SQL,
    FACE_SQL,
    IMAGE_SQL,
    insert_annotated,
    insert_rows,
    next_generation,
    store_results,
)

__all__ = [
    "BULK_FACE_SQL",
    "BULK_IMAGE_SQL",
    "insert_annotated",
    "insert_rows",
    "next_generation",
    "ANNOTATED_SQL",
    "Assignment",
    "BEST_ORDER",
    "BROKEN_CODES",
    "CHANGED_SQL",
    "FACE_COLUMNS",
    "FACE_SQL",
    "IMAGE_COLUMNS",
    "IMAGE_SQL",
    "MIGRATIONS",
    "NAME_MAX",
    "PERSON_SQL",
    "READONLY_CODES",
    "RegistryChanges",
    "SCHEMA_VERSION",
    "TRACK_FACE_SQL",
    "WATCH_COLUMNS",
    "WriterLock",
    "alert_counts",
    "annotated_ids",
    "annotated_jpeg",
    "apply_registry_update",
    "changes_since",
    "copy_photos",
    "counts",
    "db_id",
    "encoding_digest",
    "encodings_in_order",
    "ensure_schema",
    "face_count",
    "face_crop",
    "face_encoding",
    "face_encodings",
    "face_row",
    "face_rows",
    "face_tracks",
    "fatal_write_error",
    "find_person",
    "forget_person",
    "generation",
    "get_meta",
    "get_person",
    "has_change_log",
    "has_registry",
    "has_videos",
    "ids_starting",
    "image_shape",
    "mark_alerts_sent",
    "merge_persons",
    "name_person",
    "open_db",
    "open_for_writing",
    "open_readonly",
    "people_faces",
    "person_cover",
    "person_encodings",
    "person_faces",
    "persons",
    "persons_of_faces",
    "photo",
    "photo_faces",
    "photo_persons",
    "printable_name",
    "problems",
    "record_alerts",
    "registry_cells",
    "registry_changes",
    "registry_counts",
    "registry_generation",
    "registry_map",
    "registry_members",
    "registry_typical",
    "reject_faces",
    "remove_watch",
    "save_watch",
    "set_registry_cells",
    "split_person",
    "store_results",
    "stored_status",
    "unsent_alerts",
    "watch_version",
    "watches",
    "write_problem",
]
