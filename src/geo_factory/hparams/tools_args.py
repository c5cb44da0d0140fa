from dataclasses import dataclass, field


@dataclass
class ToolsArguments:
    """Geoscience tools the model may call in ``llamafactory-cli chat`` / ``webchat`` (see ``geo-factory tools``)."""

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

    def validate(self) -> None:
        """Before any model loads: the names, the round limit and the time limit."""
        from ..tools import select_tools

        try:
            select_tools(self.geo_tools)
        except ValueError as err:
            raise ValueError(f"`geo_tools: {self.geo_tools}`: {err}") from None
        rounds, timeout = self.geo_tools_max_rounds, self.geo_tools_timeout
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"`geo_tools_max_rounds` must be an integer >= 1, got {rounds!r}.")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"`geo_tools_timeout` must be a number of seconds > 0, got {timeout!r}.")
