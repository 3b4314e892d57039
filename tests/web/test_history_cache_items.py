"""The history cache keeps SQLite's JSON arrays as text: cutting and joining that text must give
what cutting and joining the decoded values gives, or a cached answer would differ."""

from __future__ import annotations

import json
import random

import pytest

from services.web.history_cache import Columns, HistoryCache, items_join, items_slice

VALUES = [None, 0, 7, -3, 12.5, 388.845, 21797797888, 1e-05]


def _items(values: list) -> str:
    return json.dumps(values, separators=(",", ":"))[1:-1]


def _values(items: str) -> list:
    return json.loads("[" + items + "]")


@pytest.mark.parametrize("seed", range(40))
def test_slices_and_joins_of_the_text_are_those_of_the_values(seed):
    rnd = random.Random(seed)
    values = [rnd.choice(VALUES) for _ in range(rnd.randint(0, 30))]
    low = rnd.randint(0, len(values))
    high = rnd.randint(low, len(values))
    cut = items_slice(_items(values), len(values), low, high)
    assert _values(cut) == values[low:high]
    more = [rnd.choice(VALUES) for _ in range(rnd.randint(0, 5))]
    assert _values(items_join(cut, _items(more))) == values[low:high] + more


def test_columns_cut_and_joined_answer_the_same_json():
    means = [1, None, 3.25, 4, None]
    maxima = [2, None, 9.5, 4, None]
    whole = Columns(100, [2, 0, 1, 3, 0], {"power_w": _items(means)}, {"power_w": _items(maxima)})
    head, tail = whole.slice(100, 102), whole.slice(102, 105)
    joined = head.then(tail)
    assert json.loads(joined.counts_json()) == [2, 0, 1, 3, 0]
    assert json.loads(joined.means_json()) == {"power_w": means}
    assert json.loads(joined.maxima_json()) == {"power_w": maxima}
    middle = whole.slice(101, 104)
    assert (middle.first, middle.end) == (101, 104)
    assert json.loads(middle.means_json()) == {"power_w": means[1:4]}
    assert json.loads(whole.slice(103, 103).means_json()) == {"power_w": []}


@pytest.mark.parametrize("seed", range(20))
def test_counts_kept_as_text_answer_the_bytes_the_ints_answer(seed):
    rnd = random.Random(seed)
    counts = [rnd.choice([0, 1, 6, 30, 360, 2160]) for _ in range(rnd.randint(1, 20))]
    nulls = _items([None] * len(counts))
    as_ints = Columns(50, counts, {"m": nulls}, {"m": nulls})
    as_text = Columns(50, counts, {"m": nulls}, {"m": nulls}, _items(counts))
    assert as_text.counts_json() == as_ints.counts_json()
    low = rnd.randint(50, as_ints.end)
    high = rnd.randint(low, as_ints.end)
    cut_ints, cut_text = as_ints.slice(low, high), as_text.slice(low, high)
    assert cut_text.counts_items is not None
    assert cut_text.counts_json() == cut_ints.counts_json()
    rest_ints, rest_text = as_ints.slice(high, as_ints.end), as_text.slice(high, as_text.end)
    assert cut_text.then(rest_text).counts_json() == cut_ints.then(rest_ints).counts_json()
    assert cut_text.then(rest_ints).counts_items is None  # text on one side only: the ints
    assert cut_text.then(rest_ints).counts_json() == cut_ints.then(rest_ints).counts_json()


def test_the_bound_counts_the_text_held():
    small = Columns(0, [1] * 10, {"m": _items([1.5] * 10)}, {"m": _items([2.5] * 10)})
    big = Columns(0, [1] * 10, {"m": _items([123456.789] * 10)}, {"m": _items([2.5] * 10)})
    assert big.cost_bytes() > small.cost_bytes()
    cache = HistoryCache(small.cost_bytes() + big.cost_bytes() - 1)
    cache.put((1, 60, None, ("m",)), small)
    cache.put((2, 60, None, ("m",)), big)  # past the bound: the older entry goes
    assert cache.get((1, 60, None, ("m",))) is None
    assert cache.get((2, 60, None, ("m",))) is big
    assert cache.held_bytes == big.cost_bytes() <= cache.max_bytes
