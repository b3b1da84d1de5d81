"""The simulated city's parameters, each pinned to one default (``docs/demo.md`` lists them).

Every value lies inside the range given in ``CITY-SIM-NOTES`` where the notes give one; the
rest are marked as assumptions in the table. The defaults are fixed *before* any collection
policy is tuned, and ``tests/plugins/test_city_params.py`` keeps the table and this code equal:
change one, change both. Fill levels and rates are fractions of a bin's capacity (1.0 = full).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kernos.edge.errors import EdgeConfigError

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
"""Day names of ``weekday_factors``; simulation day 0 is ``CityParams.start_weekday``."""


@dataclass(frozen=True, kw_only=True, slots=True)
class BinClass:
    """One land-use class of bins: how many, how large, how fast they fill, and where."""

    name: str
    """Class name (``residential``, ``commercial``, ``park``, ``underground``)."""
    share: float
    """Fraction of all bins in this class (the shares sum to 1)."""
    volume_l: float
    """Capacity of one bin, litres."""
    mean_fill_rate: float
    """Long-run mean daily fill of a bin of this class, fraction of capacity per day (the
    weekday profile averages to 1, so this is the weekly mean; events come on top)."""
    weekday_factors: tuple[float, float, float, float, float, float, float]
    """Relative fill Mon..Sun (normalised to mean 1 by the simulator), dimensionless."""
    clusters: int
    """Number of spatial clusters (neighbourhoods, downtown, parks) the bins are drawn around."""
    cluster_sigma_km: float
    """Standard deviation of a bin's distance from its cluster centre along each axis, km."""


def _default_classes() -> tuple[BinClass, ...]:
    return (
        BinClass(
            name="residential",
            share=0.50,
            volume_l=240.0,
            mean_fill_rate=0.09,
            weekday_factors=(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
            clusters=6,
            cluster_sigma_km=1.0,
        ),
        BinClass(
            name="commercial",
            share=0.20,
            volume_l=1100.0,
            mean_fill_rate=0.25,
            weekday_factors=(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5),
            clusters=2,
            cluster_sigma_km=0.6,
        ),
        BinClass(
            name="park",
            share=0.15,
            volume_l=120.0,
            mean_fill_rate=0.30,
            weekday_factors=(1.0, 1.0, 1.0, 1.0, 1.0, 1.6, 1.6),
            clusters=4,
            cluster_sigma_km=0.3,
        ),
        BinClass(
            name="underground",
            share=0.15,
            volume_l=4500.0,
            mean_fill_rate=0.07,
            weekday_factors=(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
            clusters=3,
            cluster_sigma_km=0.7,
        ),
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class CityParams:
    """Every parameter of the simulated city, with its pinned default and unit."""

    # --- the city
    n_bins: int = 300
    """Number of bins."""
    area_width_km: float = 10.0
    """Width of the (rectangular) city area, km."""
    area_height_km: float = 10.0
    """Height of the city area, km."""
    depot_x_km: float = 1.0
    """Depot position, x, km (west edge of the area)."""
    depot_y_km: float = 5.0
    """Depot position, y, km."""
    road_detour: float = 1.3
    """Road distance over straight-line distance, dimensionless."""
    classes: tuple[BinClass, ...] = field(default_factory=_default_classes)
    """The land-use classes (see :class:`BinClass`)."""
    bin_rate_cv: float = 0.35
    """Spread of mean fill rates between bins of one class (coefficient of variation)."""

    # --- the fill process
    daily_fill_cv: float = 0.4
    """Day-to-day variability of one bin's fill (coefficient of variation, gamma noise)."""
    fill_start_h: float = 7.0
    """Hour of day when waste starts arriving (uniformly until ``fill_end_h``), h."""
    fill_end_h: float = 22.0
    """Hour of day when waste stops arriving, h."""
    season_amplitude: float = 0.10
    """Relative amplitude of the yearly fill cycle (sinusoid), dimensionless."""
    season_peak_day: int = 196
    """Day of year with the most waste (mid-July), day."""
    start_day_of_year: int = 0
    """Day of year of simulation day 0, day."""
    start_weekday: int = 0
    """Weekday of simulation day 0 (0 = Monday)."""
    event_rate_per_day: float = 0.15
    """Local events (markets, festivals) starting per day in the whole city, 1/day."""
    event_radius_km: float = 0.7
    """Bins within this distance of an event's centre fill faster, km."""
    event_boost: float = 1.5
    """Extra fill during an event, multiple of normal fill (1.5: 2.5 times the usual fill)."""
    event_days: int = 2
    """Duration of a local event, days."""

    # --- trucks, waste and operations
    n_trucks: int = 6
    """Collection trucks, all at the one depot."""
    truck_body_m3: float = 20.0
    """Truck body volume (compacted waste), m³."""
    truck_payload_t: float = 10.0
    """Truck payload, tonnes."""
    truck_loads_per_day: int = 2
    """Loads a truck can tip per day (trips to the depot/transfer station)."""
    density_loose_kg_m3: float = 90.0
    """Density of loose waste in a bin, kg/m³."""
    density_compacted_kg_m3: float = 350.0
    """Density of compacted waste in the truck, kg/m³."""
    service_min_per_bin: float = 3.0
    """Time to empty one bin, minutes."""
    speed_kmh: float = 35.0
    """Average driving speed, km/h."""
    shift_start_h: float = 7.0
    """Hour of day the shift starts, h."""
    shift_h: float = 7.5
    """Shift length including breaks, h."""
    break_min: float = 45.0
    """Breaks within a shift, minutes."""

    # --- sensors
    reporting_interval_h: float = 1.0
    """Time between two readings of one sensor, h (24 a day)."""
    noise_sigma: float = 0.07
    """Standard deviation of the level reading's Gaussian noise, fraction of capacity."""
    missing_rate: float = 0.03
    """Fraction of readings that never arrive (independently per reading)."""
    dead_sensor_fraction: float = 0.015
    """Long-run fraction of sensors that are dead (send nothing) on a given day."""
    dead_sensor_days: int = 5
    """How long a dead sensor stays silent, days."""
    reading_max_level: float = 1.25
    """Highest level a sensor reports (a pile above the rim), fraction of capacity."""
    alert_level: float = 0.75
    """Fill level that raises an alert, fraction of capacity."""
    must_go_level: float = 0.90
    """Fill level at which a bin must be emptied, fraction of capacity."""

    # --- temperature, VOC and hazardous-waste incidents
    temp_mean_c: float = 10.0
    """Yearly mean air temperature inside a bin, °C."""
    temp_season_amp_c: float = 8.0
    """Half the summer-winter temperature swing, °C (peaks on ``season_peak_day``)."""
    temp_diurnal_amp_c: float = 4.0
    """Half the day-night temperature swing, °C (peaks at 15:00)."""
    temp_noise_c: float = 0.5
    """Temperature sensor noise (standard deviation), °C."""
    voc_baseline_ppm: float = 0.5
    """VOC reading of an empty bin, ppm."""
    voc_per_fill_ppm: float = 2.0
    """Extra VOC from decomposing waste per unit of fill level, ppm."""
    voc_noise_ppm: float = 0.2
    """VOC sensor noise (standard deviation), ppm."""
    hazard_rate_per_bin_day: float = 1e-4
    """Probability that a bin receives hazardous waste on a day (~5 per 180 days city-wide)."""
    hazard_temp_rise_c: float = 25.0
    """Temperature rise while a bin holds hazardous waste (smouldering, reacting), °C."""
    hazard_voc_ppm: float = 50.0
    """VOC added while a bin holds hazardous waste (solvents), ppm."""
    hazard_max_days: int = 3
    """An incident not collected fades after this many days, days."""

    # --- experiment design
    warmup_days: int = 28
    """Days simulated before any statistic counts (twice the longest fixed interval), days."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.n_bins < 1:
            problems.append("n_bins must be at least 1")
        if not self.classes:
            problems.append("classes must not be empty")
        if abs(sum(c.share for c in self.classes) - 1.0) > 1e-9:
            problems.append("class shares must sum to 1")
        if len({c.name for c in self.classes}) != len(self.classes):
            problems.append("class names must be unique")
        for c in self.classes:
            if len(c.weekday_factors) != 7 or min(c.weekday_factors) <= 0:
                problems.append(f"class {c.name!r}: weekday_factors needs 7 positive values")
            if c.volume_l <= 0 or c.mean_fill_rate <= 0 or c.clusters < 1 or c.share < 0:
                problems.append(f"class {c.name!r}: volume, rate, clusters must be positive")
        if not 0 <= self.fill_start_h < self.fill_end_h <= 24:
            problems.append("need 0 <= fill_start_h < fill_end_h <= 24")
        if not 0 < self.alert_level < self.must_go_level:
            problems.append("need 0 < alert_level < must_go_level")
        if not 0 < self.reporting_interval_h <= 24 or 24 % self.reporting_interval_h:
            problems.append("reporting_interval_h must divide 24")
        for name in ("missing_rate", "dead_sensor_fraction", "hazard_rate_per_bin_day"):
            if not 0 <= getattr(self, name) < 1:
                problems.append(f"{name} must be in [0, 1)")
        if min(self.event_days, self.dead_sensor_days, self.hazard_max_days) < 1:
            problems.append("event_days, dead_sensor_days and hazard_max_days must be >= 1")
        if not 0 <= self.start_weekday < 7:
            problems.append("start_weekday must be 0..6")
        if problems:
            raise EdgeConfigError("invalid city parameters: " + "; ".join(problems))

    @property
    def readings_per_day(self) -> int:
        """Readings one working sensor sends per day."""
        return round(24 / self.reporting_interval_h)

    @property
    def truck_capacity_loose_m3(self) -> float:
        """Loose bin volume one truck load holds: the body or the payload, whichever binds."""
        by_volume = self.truck_body_m3 * self.density_compacted_kg_m3 / self.density_loose_kg_m3
        by_weight = self.truck_payload_t * 1000.0 / self.density_loose_kg_m3
        return min(by_volume, by_weight)

    def class_named(self, name: str) -> BinClass:
        """The class called ``name``; :class:`~kernos.edge.errors.EdgeConfigError` if none."""
        for c in self.classes:
            if c.name == name:
                return c
        raise EdgeConfigError(f"no bin class {name!r}; known: {[c.name for c in self.classes]}")
