"""One resource per outside system, plus the power model and run settings."""

from carbon_pipeline.resources.carbon_intensity import CarbonIntensityResource
from carbon_pipeline.resources.power_model import PowerModelResource
from carbon_pipeline.resources.prometheus import PrometheusResource
from carbon_pipeline.resources.registry import RegistryResource
from carbon_pipeline.resources.settings import PipelineSettings
from carbon_pipeline.resources.sites import SitesResource
from carbon_pipeline.resources.warehouse import WarehouseResource

__all__ = [
    "CarbonIntensityResource",
    "PipelineSettings",
    "PowerModelResource",
    "PrometheusResource",
    "RegistryResource",
    "SitesResource",
    "WarehouseResource",
]
