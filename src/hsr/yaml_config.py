"""The one YAML reader of run configs (a low-level module: options.py and pipeline.config both use it).

Safe loading with three refusals a config file needs: no base-60 numbers, no anchors or aliases,
and no key given twice.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from .errors import ConfigError
from .values import shown


class YamlRefused(ConfigError, yaml.YAMLError):
    """YAML that parses but that a run config refuses: a key given twice, an anchor or alias."""


class _YamlLoader(yaml.SafeLoader):
    """YAML 1.1 safe loader without base-60 numbers (``sparsity: 2:4`` stays the text "2:4", not 124),
    without anchors and aliases (``&a``/``*a``: a few lines of them expand to gigabytes, and a config
    has no use for them), and refusing a key given twice (YAML keeps the last one silently)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            mark = event.start_mark
            raise YamlRefused(f"line {mark.line + 1}: YAML anchors and aliases (&{event.anchor}, *{event.anchor}) are "
                              "not allowed in run configs; write the value out.")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    seen = first.setdefault(key, line)
                except TypeError:
                    continue  # an unhashable key: the base class reports it
                if seen != line:
                    raise YamlRefused(f"line {line}: key {shown(key)} is given twice (first on line {seen}); YAML "
                                      "would silently keep the last one, so remove one of them.")
        return super().construct_mapping(node, deep=deep)


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if not (tag.endswith((":int", ":float")) and rx.match("2:4"))]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(  # decimal integers only (base 60 removed above)
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_YamlLoader.add_implicit_resolver(  # 1e-4 is a number, as a user means it (YAML 1.1 wants 1.0e-4)
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def load_yaml(text: str) -> Any:
    """Parse config YAML (no base-60 numbers)."""
    return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 (a SafeLoader subclass)
