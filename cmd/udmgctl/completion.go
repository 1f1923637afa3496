package main

// completion is `udmgctl completion bash|zsh`: cobra's completion script
// for the shell. The scripts ask udmgctl itself (its hidden __complete
// command) for the candidates: subcommands, flags, the words of the
// enumerated flags and arguments (tree.go), files otherwise.
func (c *cli) completion(shell string) func([]string) error {
	return func([]string) error {
		if shell == "zsh" {
			return c.root.GenZshCompletion(c.stdout)
		}
		return c.root.GenBashCompletionV2(c.stdout, true)
	}
}
