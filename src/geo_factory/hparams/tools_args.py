from dataclasses import dataclass, field

from .checks import check_int, check_number, check_str


@dataclass
class ToolsArguments:
    """Geoscience tools the model may call in ``llamafactory-cli chat`` / ``webchat`` (see ``geo-factory tools``).

    The tool names are checked against the registry after parsing, where the chat's tool session is built
    (:func:`geo_factory.tools.chat.parse_session`): ``hparams`` imports nothing of the tools.
    """

    geo_tools: str | None = field(
        default=None,
        metadata={
            "help": "Tools the model may call: `all`, or a comma-separated list of names (`geo-factory tools` lists "
            "them). Each call is executed and its result returned as an observation turn. Unset: none."
        },
    )
    geo_tools_max_rounds: int = field(
        default=4, metadata={"help": "Most rounds of tool calls per answer; then the chat stops the answer."}
    )
    geo_tools_timeout: float = field(default=10.0, metadata={"help": "Time limit of one tool call, in seconds."})

    def __post_init__(self):
        check_str("geo_tools", self.geo_tools, optional=True)
        check_int("geo_tools_max_rounds", self.geo_tools_max_rounds, 1)
        check_number("geo_tools_timeout", self.geo_tools_timeout, 0)
