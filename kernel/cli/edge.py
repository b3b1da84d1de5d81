"""``kernos edge run|buffer``: the edge agent (``kernos-edge``) from the kernos command.

The commands are ``kernos-edge``'s own, so both spellings take the same options and behave
the same; errors come out as ``kernos: error: ...`` with the same exit statuses.
"""

from __future__ import annotations

import click

from kernos.edge.cli import buffer_group, run

__all__ = ["edge"]


@click.group()
def edge() -> None:
    """Run the edge agent: filter sensor readings and forward them to a kernel.

    \b
    Examples:
      kernos edge run --source sim --kernel http://127.0.0.1:8787 --key "$KEY" --days 2
      kernos edge buffer stats --buffer ~/.kernos-edge/buffer.sqlite
    """


edge.add_command(run)
edge.add_command(buffer_group)
