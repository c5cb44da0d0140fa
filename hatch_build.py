"""Hatch build hook: ship ``geo_factory.pth`` at the root of site-packages.

The ``.pth`` line is what makes the stock ``llamafactory-cli`` pick geo-factory up with no wrapper
command (the technique pytest-cov and setuptools use). Editable wheels need it too, through
``force_include_editable``.
"""

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class PthBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        key = "force_include_editable" if version == "editable" else "force_include"
        build_data.setdefault(key, {})["src/geo_factory.pth"] = "geo_factory.pth"
