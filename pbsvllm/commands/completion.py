"""``pbsvllm completion SHELL``: print the shell-completion script."""

from __future__ import annotations

import click


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def command(shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    Completes commands, options, tracked aliases and job ids, and profile
    names. Load it in the current shell, or install it for new ones:

    \b
      bash:  eval "$(pbsvllm completion bash)"      # or, for every new shell:
             pbsvllm completion bash > ~/.local/share/bash-completion/completions/pbsvllm
      zsh:   eval "$(pbsvllm completion zsh)"       # after compinit in ~/.zshrc
      fish:  pbsvllm completion fish > ~/.config/fish/completions/pbsvllm.fish
    """
    from pbsvllm.completion import script

    click.echo(script(shell), nl=False)
