"""A ``put --ids`` file cut into chunks of whole entities, each written by one ``deid.load``.

Why chunks: writing ids into the run store (packing each item, sending it) costs about twice
the read and check, so ``put --ids`` leaves it to the workers, and the producer only reads,
checks and cuts (:mod:`deid_workers.tasks.load`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterator
from typing import Any

from .read import ENTITY_END, ENTITY_START, iter_checked_items, merge_pairs

__all__ = ["IDS_CHUNK_ITEMS", "iter_ids_chunks", "parse_ids_chunk"]

IDS_CHUNK_ITEMS = 1000
"""Items (whole entities) per chunk of an ids file that one ``deid.load`` task writes."""


def iter_ids_chunks(path: str | os.PathLike[str], items: int = IDS_CHUNK_ITEMS, *,
                    fields: Collection[str] | None = None) -> Iterator[tuple[str, int]]:
    """The ids of a file in chunks of whole entities, about ``items`` items each, every item
    checked as :func:`load_ids` checks it: ``(text, items in it)``, in file order.

    Why: writing ids into the run store (packing each item, sending it) costs about twice the
    read and check, so ``put --ids`` leaves it to the workers, and the producer only reads,
    checks and cuts. A chunk is a JSON list of ``[entity, items]`` pairs (an entity written
    twice is two pairs); the items are the file's own text when it is JSON, so nothing is
    encoded twice, and ``json.dumps`` of the checked values when it is a pickle. With
    ``fields``, each item keeps only those names (what the run's recipe can read, see
    :func:`~deid_workers.recipe.ids_fields_read`); every field is still checked. The cut
    depends only on the file and ``items``, so a resumed run gets the same chunks.

    A JSON file is read an item at a time (:meth:`_JsonEntities.items`), and an entity of more
    than a chunk's items is cut into several pairs once a chunk holds twice ``items`` (and at
    least :data:`IDS_CHUNK_ITEMS`): so the producer holds about a chunk whatever one entity
    (one patient) weighs. An item key written
    twice inside one entity is merged when both fall in the same chunk; across a cut the later
    replaces the earlier, as for an entity written twice.
    """
    keep = None if fields is None else frozenset(fields)
    parts: list[str] = []  # the chunk's finished pairs
    members: list[str] = []  # the items read of the current entity's pair
    entity_text = ""
    pair_open = False
    count = 0
    cut_at = max(2 * items, IDS_CHUNK_ITEMS)

    def close_pair() -> None:
        parts.append(f"[{entity_text}, {{{', '.join(members)}}}]")
        members.clear()

    for entity, item, checked, raw in iter_checked_items(path):
        if item is ENTITY_START:
            entity_text, pair_open = json.dumps(entity), True
            continue
        if item is ENTITY_END:
            if pair_open:
                close_pair()
                pair_open = False
            if count >= items:
                yield "[" + ", ".join(parts) + "]", count
                parts, count = [], 0
            continue
        if keep is not None:
            checked = {name: value for name, value in checked.items() if name in keep} if keep else {}
            raw = None
        members.append(f"{json.dumps(item)}: {json.dumps(checked) if raw is None else raw}")
        pair_open = True
        count += 1
        if count >= cut_at:  # an entity bigger than a chunk: cut inside it
            close_pair()
            pair_open = False
            yield "[" + ", ".join(parts) + "]", count
            parts, count = [], 0
    if parts:
        yield "[" + ", ".join(parts) + "]", count


def parse_ids_chunk(text: str) -> list[tuple[str, dict[str, dict[str, Any]]]]:
    """The ``(entity, items)`` pairs of a chunk :func:`iter_ids_chunks` made.

    Not checked again: the producer checked every value it cut, and a JSON parse of that text
    (with the same rule for a repeated key) gives back the same plain values.
    """
    return [(entity, items) for entity, items in json.loads(text, object_pairs_hook=merge_pairs)]
