"""PostgreSQL's binary COPY format, encoded with numpy instead of row by row.

Rows that share their text values and NULL pattern have one fixed layout, so each such group
becomes a numpy structured array whose bytes are exactly the COPY tuples of those rows. A
window's rows fall into a handful of groups (text columns are names and flags), which makes
encoding close to memcpy speed: the COPY itself is then the cost, not Python.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
TRAILER = (-1).to_bytes(2, "big", signed=True)
_EPOCH_2000_US = np.datetime64("2000-01-01T00:00:00", "us").astype(np.int64)
_FIXED = {"float8": ">f8", "int8": ">i8", "int4": ">i4", "timestamptz": ">i8"}


class EncodeError(ValueError):
    """A value cannot be written to its column."""


def _column(frame: pd.DataFrame, name: str, kind: str):
    """(values, null mask or None, utf-8 categories or None) of one column."""
    series = frame[name]
    if kind == "timestamptz":
        stamps = pd.to_datetime(series, utc=True)
        null = stamps.isna().to_numpy()
        micros = stamps.dt.tz_convert(None).to_numpy().astype("datetime64[us]").astype(np.int64)
        return micros - _EPOCH_2000_US, (null if null.any() else None), None
    if kind == "float8":
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        null = np.isnan(values)
        return values, (null if null.any() else None), None
    if kind in ("int8", "int4"):
        if series.isna().any():
            raise EncodeError(f"column {name} has NULLs but is written as {kind}")
        return series.to_numpy(dtype=np.int64), None, None
    if kind == "text":
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        return codes, None, [str(u).encode("utf-8") for u in uniques]
    raise EncodeError(f"unsupported column kind {kind!r} for {name}")


def encode(frame: pd.DataFrame, columns: Sequence[tuple[str, str]]) -> bytes:
    """The binary COPY payload (header, tuples, trailer) of frame's rows, columns in order."""
    prepared = [(name, kind, *_column(frame, name, kind)) for name, kind in columns]
    # Rows group by their text values and NULL pattern: within a group every row has one layout.
    key_parts = []
    for _, _kind, values, null, categories in prepared:
        if categories is not None:
            key_parts.append(values.astype(np.int64) + 1)  # -1 (NULL) becomes 0
        elif null is not None:
            key_parts.append(null.astype(np.int64))
    if key_parts and len(frame) == 0:
        groups = []
    elif key_parts:
        keys = np.stack(key_parts, axis=1)
        # One integer per row (the parts in mixed radix): sorting int64 is many times faster
        # than np.unique over rows. Parts are category codes and flags: no overflow in practice.
        radix = np.cumprod([1, *(int(part.max()) + 1 for part in key_parts[:-1])])
        if radix[-1] * (int(key_parts[-1].max()) + 1) >= 2**62:
            raise EncodeError("too many distinct text values to group rows by")
        combined = keys @ radix.astype(np.int64)
        order = np.argsort(combined, kind="stable")
        sorted_keys = combined[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        bounds = np.r_[starts, len(order)]
        groups = [
            (keys[order[bounds[g]]], order[bounds[g] : bounds[g + 1]]) for g in range(len(starts))
        ]
    else:
        groups = [(None, slice(None))]
    out = [HEADER]
    for key, rows in groups:
        out.append(_encode_group(prepared, key, rows, len(frame)))
    out.append(TRAILER)
    return b"".join(out)


def _encode_group(prepared, key, rows, total_rows: int) -> bytes:
    fields: list[tuple[str, str]] = [("n", ">i2")]
    fill: list[tuple[str, object]] = [("n", len(prepared))]
    key_index = 0
    for position, (_name, kind, values, null, categories) in enumerate(prepared):
        length_field, value_field = f"l{position}", f"v{position}"
        if categories is not None:
            code = int(key[key_index]) - 1
            key_index += 1
            if code < 0:
                fields.append((length_field, ">i4"))
                fill.append((length_field, -1))
                continue
            text = categories[code]
            fields += (
                [(length_field, ">i4"), (value_field, f"S{len(text)}")]
                if text
                else [(length_field, ">i4")]
            )
            fill.append((length_field, len(text)))
            if text:
                fill.append((value_field, text))
            continue
        if null is not None:
            is_null = bool(key[key_index])
            key_index += 1
            if is_null:
                fields.append((length_field, ">i4"))
                fill.append((length_field, -1))
                continue
        dtype = _FIXED[kind]
        fields += [(length_field, ">i4"), (value_field, dtype)]
        fill.append((length_field, np.dtype(dtype).itemsize))
        fill.append((value_field, values[rows]))
    count = total_rows if isinstance(rows, slice) else len(rows)
    records = np.empty(count, dtype=np.dtype(fields))
    for field, value in fill:
        records[field] = value
    return records.tobytes()
