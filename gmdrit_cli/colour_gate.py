"""The colour gate (``gmdrit export --colour-gate Q``): random attributes whose translation would give the subject a
colour the target domain's photos do not have are drawn again. Without torch, so that the ONNX path uses it too.

Why: in a trained GM-DRIT model the mean colour a random attribute z paints the input's coloured pixels (the fruit)
is close to linear in z (held-out R^2 0.8-0.96, docs/results.md); the ends of that line are the olive, pale or
dark fruit a user would not keep. The gate stores that line, fitted at export time on training images
(:mod:`gmdrit_cli.inference.gate_fit`), and the colours of the target domain's own training photos; a draw is kept
when its predicted colour lies inside the region that holds the share ``Q`` of those photos (Mahalanobis distance).
The prior, the networks and every other draw stay as they are: the gate only chooses among the prior's draws.

A chroma gate (``--gate-by chroma``) keeps a draw instead when its predicted colour carries at least a threshold of
the target's hue: the projection of its (red-green, yellow-blue) part on the direction of the mean colour that the
target's own training images' encoded attributes give the same inputs. Why: the good draws paint the fruit more
saturated than the photos' mean colour (leaves and shadows included), so the photos' region holds off-colour and
good draws alike, while the off-colour draws are the ones short of the target's hue (docs/results.md). A chroma
gate may also hold a lightness band (the central share of the target photos' subject lightness): outside it the
colour saturates towards white or black, where the line over-predicts chroma.

Colours are :func:`gmdrit_cli.families.drit_losses.subject_colour`: opponent coordinates of RGB on a 0..1 scale
(lightness, red-green, yellow-blue) averaged over the input's coloured pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: candidates drawn per round: at least this many, or 4 per attribute asked for
ROUND_MIN = 64
#: rounds before giving up on the region: the rest are the candidates nearest to it (a bounded, deterministic draw)
MAX_ROUNDS = 16


@dataclass
class DomainGate:
    """One target domain's gate: predicted colour ``[z, 1] @ weight`` ((nz + 1) x 3); kept when its squared
    Mahalanobis distance to ``centre`` (3) under ``precision`` (3 x 3) is at most ``limit``. A chroma gate has a
    ``direction`` (3, unit length, no lightness part) instead of a precision: its distance is how far the colour
    falls short of ``centre`` along ``direction`` (negative beyond it); with a ``lightness`` band (low, high), a
    colour outside it is as far as its lightness is from the band, beyond ``limit``."""

    weight: np.ndarray
    centre: np.ndarray
    precision: np.ndarray | None
    limit: float
    direction: np.ndarray | None = None
    lightness: np.ndarray | None = None

    def predict(self, z: np.ndarray) -> np.ndarray:
        """The colours M x 3 that attributes z M x nz are predicted to give."""
        z = np.asarray(z, dtype=np.float64)
        return np.concatenate([z, np.ones((len(z), 1))], axis=1) @ self.weight

    def colour_distances(self, colours: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distances M of colours M x 3 from the target photos' centre; for a chroma gate, the
        shortfall of their chroma below the centre's."""
        offset = colours - self.centre
        if self.direction is not None:
            shortfall = -offset @ self.direction
            if self.lightness is None:
                return shortfall
            low, high = self.lightness
            outside = np.maximum(np.maximum(low - colours[:, 0], colours[:, 0] - high), 0.0)
            # kept (<= limit) only inside the band and short by at most limit; else ordered by the larger miss
            return np.where(outside > 0, np.maximum(shortfall, self.limit) + outside, shortfall)
        return np.einsum("mi,ij,mj->m", offset, self.precision, offset)

    def distances(self, z: np.ndarray) -> np.ndarray:
        """Squared distances M of the colours z M x nz predict, from the target photos' centre."""
        return self.colour_distances(self.predict(z))


def gate_from_record(record: dict, nz: int) -> dict[int, DomainGate]:
    """The gates of an export's ``colour_gate`` record (``{"domains": [{"domain": d, "weight": ..., ...}]}``), by
    target domain. Raises ValueError when the record is not one gmdrit wrote for ``nz``-dimensional attributes."""
    gates, chroma = {}, record.get("kind", "region") == "chroma"
    if record.get("kind", "region") not in ("region", "chroma"):
        raise ValueError(f"colour gate kind {record['kind']!r}")
    for entry in record["domains"]:
        shape = np.asarray(entry["direction" if chroma else "precision"], dtype=np.float64)
        band = entry.get("lightness") if chroma else None
        gate = DomainGate(
            np.asarray(entry["weight"], dtype=np.float64),
            np.asarray(entry["centre"], dtype=np.float64),
            None if chroma else shape,
            float(entry["limit"]),
            shape if chroma else None,
            None if band is None else np.asarray(band, dtype=np.float64),
        )
        if gate.lightness is not None and (gate.lightness.shape != (2,) or not gate.lightness[0] < gate.lightness[1]):
            raise ValueError(f"colour gate of domain {entry['domain']}: lightness band {band}")
        shapes = (gate.weight.shape, gate.centre.shape, shape.shape)
        limit_ok = np.isfinite(gate.limit) if chroma else gate.limit > 0  # a shortfall may be negative
        if shapes != ((nz + 1, 3), (3,), (3,) if chroma else (3, 3)) or not np.isfinite(gate.weight).all():
            raise ValueError(f"colour gate of domain {entry['domain']}: shapes {shapes} for nz {nz}")
        if not limit_ok:
            raise ValueError(f"colour gate of domain {entry['domain']}: limit {gate.limit}")
        gates[int(entry["domain"])] = gate
    return gates


def gate_name(record: dict) -> str:
    """How a model line names the gate of a ``colour_gate`` record: ``colour gate 0.9``, ``chroma gate 0.75``,
    or with a share per domain ``chroma gate orange 0.75, apple 0.5``."""
    kind = "chroma" if record.get("kind") == "chroma" else "colour"
    share = record.get("share", 0.0)
    if isinstance(share, dict):
        return f"{kind} gate " + ", ".join(f"{name} {float(q):g}" for name, q in share.items())
    return f"{kind} gate {float(share):g}"


def gated_draw(draw, n: int, gate: DomainGate | None, to_numpy, concat):
    """``n`` attributes ``(z, condition)`` from ``draw(m)`` (m prior draws, torch or numpy) that ``gate`` keeps,
    in the order drawn; without a gate, ``draw(n)`` itself. Candidates are drawn in rounds until n are kept (at
    most :data:`MAX_ROUNDS`; short, the nearest rejected ones fill in), so a seeded draw stays reproducible.
    ``to_numpy`` turns a z into a numpy array; ``concat`` joins a list of z's or conditions."""
    if gate is None or n == 0:
        return draw(n)
    size, zs, conditions, dist, kept_so_far = max(ROUND_MIN, 4 * n), [], [], [], 0
    for _ in range(MAX_ROUNDS):
        z, condition = draw(size)
        zs.append(z)
        conditions.append(condition)
        dist.append(gate.distances(to_numpy(z)))
        kept_so_far += int((dist[-1] <= gate.limit).sum())
        if kept_so_far >= n:
            break
    dist = np.concatenate(dist)
    kept = np.flatnonzero(dist <= gate.limit)
    rest = np.flatnonzero(dist > gate.limit)
    order = np.concatenate([kept, rest[np.argsort(dist[rest], kind="stable")]])[:n]
    return concat(zs)[order], concat(conditions)[order]
