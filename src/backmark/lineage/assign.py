"""Maximum-weight matching of two sets of units (the Hungarian method), written for lineage.

Shortest augmenting paths with potentials (Kuhn-Munkres as refined by Jonker and Volgenant), one row at a
time, each step vectorised over the columns with numpy: O(n^2 m) arithmetic, about a second for 512 x 512.
The result does not depend on the order of the columns beyond ties, which is what makes the lineage
matchings permutation-equivariant: permuting the suspect's units permutes the matching the same way.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float64]
Indices = npt.NDArray[np.int64]


def _min_cost(cost: Matrix) -> Indices:
    """For ``cost`` of shape (n, m), n <= m: the column of each row in a minimum-cost matching."""
    n, m = cost.shape
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    # row_of[j]: the 1-based row on column j (0: none); column 0 is a sentinel
    row_of = np.zeros(m + 1, dtype=np.int64)
    way = np.zeros(m + 1, dtype=np.int64)
    for i in range(1, n + 1):
        row_of[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = row_of[j0]
            reduced = cost[i0 - 1] - u[i0] - v[1:]
            free = ~used[1:]
            better = free & (reduced < minv[1:])
            minv[1:][better] = reduced[better]
            way[1:][better] = j0
            masked = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(masked)) + 1
            delta = masked[j1 - 1]
            u[row_of[used]] += delta
            v[used] -= delta
            minv[~used] -= delta
            j0 = j1
            if row_of[j0] == 0:
                break
        while j0:
            j1 = int(way[j0])
            row_of[j0] = row_of[j1]
            j0 = j1
    column = np.full(n, -1, dtype=np.int64)
    for j in range(1, m + 1):
        if row_of[j]:
            column[row_of[j] - 1] = j - 1
    return column


def match(similarity: Matrix) -> Indices:
    """The matching of largest total ``similarity`` (shape (n_owner, n_suspect)): for each owner unit,
    its suspect unit, or -1 where the owner has more units than the suspect and this one is left over."""
    sim = np.nan_to_num(np.asarray(similarity, dtype=np.float64))
    n, m = sim.shape
    if n <= m:
        return _min_cost(-sim)
    owner_of = _min_cost(-sim.T)  # each suspect unit's owner unit
    column = np.full(n, -1, dtype=np.int64)
    column[owner_of] = np.arange(m)
    return column
