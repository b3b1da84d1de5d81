"""The simulated city's layout: bins clustered by land use, one depot, road distances.

``City.generate(params, seed)`` is deterministic per seed. Node 0 of the distance matrix is
the depot and node ``i + 1`` is bin ``i`` (the order OR-Tools expects).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kernos.edge.sim.params import CityParams

STREAM_CITY = 1
"""Random stream of the layout: ``numpy.random.default_rng([seed, STREAM_CITY])``."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def class_counts(params: CityParams) -> list[int]:
    """Bins per class: shares of ``n_bins`` rounded so that they sum to ``n_bins``."""
    raw = [c.share * params.n_bins for c in params.classes]
    counts = [int(x) for x in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: counts[i] - raw[i])
    for i in by_remainder[: params.n_bins - sum(counts)]:
        counts[i] += 1
    return counts


@dataclass(frozen=True, eq=False)
class City:
    """One realization of the city: where the bins are, what they are, how fast they fill."""

    params: CityParams
    """The parameters it was generated from."""
    seed: int
    """The seed it was generated with."""
    xy_km: FloatArray
    """Bin positions, shape (n_bins, 2), km."""
    bin_class: IntArray
    """Index into ``params.classes`` per bin, shape (n_bins,)."""
    volume_l: FloatArray
    """Capacity per bin, litres, shape (n_bins,)."""
    mean_rate: FloatArray
    """Long-run mean daily fill per bin, fraction of capacity per day, shape (n_bins,)."""
    depot_km: FloatArray
    """Depot position, shape (2,), km."""
    dist_km: FloatArray
    """Road distances between nodes (0 = depot, i + 1 = bin i), shape (n+1, n+1), km."""

    @property
    def n_bins(self) -> int:
        """Number of bins."""
        return int(self.xy_km.shape[0])

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class name per class index."""
        return tuple(c.name for c in self.params.classes)

    def bins_of(self, name: str) -> IntArray:
        """Ids of the bins of class ``name``."""
        index = self.class_names.index(self.params.class_named(name).name)
        return np.flatnonzero(self.bin_class == index).astype(np.int64)

    @classmethod
    def generate(cls, params: CityParams, seed: int) -> City:
        """Lay out ``params.n_bins`` bins around per-class clusters; deterministic per seed.

        Cluster centres are uniform in the area (1 km from its edges); each bin is placed
        around one of its class's centres with Gaussian spread and clipped to the area. A bin's
        mean fill rate is its class's rate times a lognormal factor (CV ``bin_rate_cv``)
        rescaled so that each class's bins average exactly the class rate.
        """
        rng = np.random.default_rng([seed, STREAM_CITY])
        size = np.array([params.area_width_km, params.area_height_km])
        margin = np.minimum(1.0, size / 4)
        xy_parts: list[FloatArray] = []
        class_parts: list[IntArray] = []
        rate_parts: list[FloatArray] = []
        volume_parts: list[FloatArray] = []
        sigma_log = float(np.sqrt(np.log1p(params.bin_rate_cv**2)))
        for index, (bin_class, count) in enumerate(
            zip(params.classes, class_counts(params), strict=True)
        ):
            centres = rng.uniform(margin, size - margin, size=(bin_class.clusters, 2))
            which = rng.integers(0, bin_class.clusters, size=count)
            xy = centres[which] + rng.normal(0.0, bin_class.cluster_sigma_km, size=(count, 2))
            xy_parts.append(np.clip(xy, 0.0, size))
            class_parts.append(np.full(count, index, dtype=np.int64))
            factor = rng.lognormal(-(sigma_log**2) / 2, sigma_log, size=count)
            if count:
                factor = factor / factor.mean()
            rate_parts.append(bin_class.mean_fill_rate * factor)
            volume_parts.append(np.full(count, bin_class.volume_l))
        xy_km = np.concatenate(xy_parts)
        depot = np.array([params.depot_x_km, params.depot_y_km], dtype=np.float64)
        nodes = np.vstack([depot, xy_km])
        diff = nodes[:, None, :] - nodes[None, :, :]
        dist = np.sqrt((diff**2).sum(axis=-1)) * params.road_detour
        return cls(
            params=params,
            seed=seed,
            xy_km=xy_km,
            bin_class=np.concatenate(class_parts),
            volume_l=np.concatenate(volume_parts),
            mean_rate=np.concatenate(rate_parts),
            depot_km=depot,
            dist_km=dist,
        )
