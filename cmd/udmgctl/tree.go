package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// cobra's one setting for the whole process, set once: run may run
// concurrently (the tests do).
func init() {
	cobra.EnableCommandSorting = false // the table's order
}

// tree builds the cobra command tree from the table: a group command for
// each first word (nodes, users, ...), a leaf for each command; the global
// flags are the root's persistent flags, so that they may also follow the
// command. Help, usage errors and completion are the tree's own (help.go
// formats them).
func (c *cli) tree() *cobra.Command {
	root := &cobra.Command{
		Use:               "udmgctl",
		SilenceErrors:     true, // run reports them, on one line
		SilenceUsage:      true,
		TraverseChildren:  true, // global flags before the command are the caller's (users add --password is the new user's)
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		Args: func(cmd *cobra.Command, args []string) error {
			return c.unknownCommand(cmd, args)
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			canonEnums(cmd.Flags())
			return nil
		},
	}
	root.SetOut(c.stdout)
	root.SetErr(c.stderr)
	root.SetHelpFunc(c.help)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return &usageError{cmd, flagError(cmd, err)} })
	c.globalFlags(root.PersistentFlags())
	// Our own -h/--help, hidden: cobra's would be offered by completion.
	root.PersistentFlags().BoolP("help", "h", false, "")
	root.PersistentFlags().MarkHidden("help")
	c.helpCmd = &cobra.Command{Use: "help [COMMAND]", Short: "help about a command", Args: cobra.ArbitraryArgs,
		RunE: func(_ *cobra.Command, words []string) error { return c.helpAbout(root, words) }}
	root.SetHelpCommand(c.helpCmd)

	groups := map[string]*cobra.Command{}
	for _, cmd := range c.commands() {
		words := strings.Fields(cmd.path)
		parent := root
		if len(words) == 2 {
			if parent = groups[words[0]]; parent == nil {
				parent = c.group(words[0])
				groups[words[0]] = parent
				root.AddCommand(parent)
			}
		}
		parent.AddCommand(c.leaf(cmd, words[len(words)-1]))
	}
	for _, g := range groups {
		var subs []string
		for _, sub := range g.Commands() {
			subs = append(subs, sub.Name())
		}
		g.Short = strings.Join(subs, ", ")
	}
	// Merge the persistent flags into every command's set now: cobra looks
	// up, before parsing, whether a flag takes a value (--json does not).
	walk(root, func(cmd *cobra.Command) { cmd.LocalFlags() })
	return root
}

// walk calls f on cmd and every command under it.
func walk(cmd *cobra.Command, f func(*cobra.Command)) {
	f(cmd)
	for _, sub := range cmd.Commands() {
		walk(sub, f)
	}
}

// group is the command of a first word: it runs only to say which
// subcommand is missing or unknown.
func (c *cli) group(name string) *cobra.Command {
	return &cobra.Command{Use: name, Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return c.unknownCommand(cmd, args) }}
}

// leaf is one command of the table.
func (c *cli) leaf(cmd command, name string) *cobra.Command {
	cc := &cobra.Command{Use: strings.TrimSpace(name + " " + cmd.synopsis), Short: cmd.summary, Long: cmd.note}
	run := cmd.run
	if cmd.flags != nil {
		run = cmd.flags(cc.Flags())
	}
	cc.Args = func(cc *cobra.Command, pos []string) error { return positional(cc, pos, cmd.args) }
	cc.RunE = func(cc *cobra.Command, pos []string) error {
		err := run(canonPositional(pos, cmd.args))
		var u *usageError
		if errors.As(err, &u) && u.cmd == nil {
			u.cmd = cc
		}
		return err
	}
	cc.Flags().VisitAll(func(f *pflag.Flag) {
		if e, ok := enums[f.Name]; ok {
			cc.RegisterFlagCompletionFunc(f.Name, completeWords(e.values))
		}
	})
	cc.ValidArgsFunction = func(_ *cobra.Command, pos []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if i := len(pos); i < len(cmd.args) {
			if e, ok := enums[strings.ToLower(cmd.args[i])]; ok {
				return completeWords(e.values)(nil, pos, toComplete)
			}
		}
		return nil, cobra.ShellCompDirectiveDefault // files
	}
	return cc
}

// completeWords completes one of words, whatever the case typed so far.
func completeWords(words []string) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var out []cobra.Completion
		for _, w := range words {
			if strings.HasPrefix(strings.ToLower(w), strings.ToLower(toComplete)) {
				out = append(out, w)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// helpAbout is `udmgctl help WORDS...`: the help of the command they name.
func (c *cli) helpAbout(root *cobra.Command, words []string) error {
	target := root
	for i, w := range words {
		next := subcommand(target, w)
		if next == nil {
			if !target.HasSubCommands() {
				return &usageError{target, fmt.Errorf("unexpected argument %q", w)}
			}
			return c.unknownCommand(target, words[i:])
		}
		target = next
	}
	return target.Help()
}

func subcommand(cmd *cobra.Command, name string) *cobra.Command {
	for _, sub := range cmd.Commands() {
		if sub.Name() == name && sub.IsAvailableCommand() {
			return sub
		}
	}
	return nil
}

// unknownCommand is the usage error of a command line naming no command of
// group (the root or a first word), or nil when there are no words.
func (c *cli) unknownCommand(group *cobra.Command, args []string) error {
	var names []string
	for _, sub := range group.Commands() {
		if sub.IsAvailableCommand() {
			names = append(names, sub.Name())
		}
	}
	switch {
	case !group.HasParent() && len(args) > 0:
		return &usageError{group, fmt.Errorf("unknown command %q (commands: %s)", args[0], strings.Join(names, ", "))}
	case !group.HasParent():
		return nil
	case len(args) == 0:
		return &usageError{group, fmt.Errorf("missing subcommand (%s)", strings.Join(names, ", "))}
	}
	return &usageError{group, fmt.Errorf("unknown subcommand %q (%s)", args[0], strings.Join(names, ", "))}
}

// positional checks the number of positional arguments.
func positional(cmd *cobra.Command, args, want []string) error {
	switch {
	case len(args) == len(want):
		return nil
	case len(want) == 0:
		return &usageError{cmd, fmt.Errorf("unexpected argument %q", args[0])}
	}
	return &usageError{cmd, fmt.Errorf("want %s, got %d argument(s)", strings.Join(want, " "), len(args))}
}

// canonEnums puts the enumerated flags set in fs in the API's case; the
// API checks the values themselves (and names the field when it refuses
// one).
func canonEnums(fs *pflag.FlagSet) {
	fs.Visit(func(f *pflag.Flag) {
		if e, ok := enums[f.Name]; ok {
			f.Value.Set(e.canon(f.Value.String()))
		}
	})
}

// canonPositional puts the positional arguments named like an enumerated
// flag (rules delete NAME DIRECTION) in the API's case.
func canonPositional(pos, want []string) []string {
	for i, name := range want {
		if e, ok := enums[strings.ToLower(name)]; ok && i < len(pos) {
			pos[i] = e.canon(pos[i])
		}
	}
	return pos
}

// usageError is a command line cmd cannot run: run reports it with cmd's
// usage. A command's code leaves cmd nil; its leaf fills it in.
type usageError struct {
	cmd *cobra.Command
	err error
}

func (u *usageError) Error() string { return u.err.Error() }
func (u *usageError) Unwrap() error { return u.err }

// usage is a usageError of the command running.
func usage(format string, a ...any) error { return &usageError{err: fmt.Errorf(format, a...)} }

// flagError rewrites pflag's errors to name the flag as it is written
// (--name) and say what it wants.
func flagError(cmd *cobra.Command, err error) error {
	var (
		notExist *pflag.NotExistError
		required *pflag.ValueRequiredError
		invalid  *pflag.InvalidValueError
	)
	switch {
	case errors.As(err, &notExist):
		name := "--" + notExist.GetSpecifiedName()
		if notExist.GetSpecifiedName() == "" {
			name = "-" + notExist.GetSpecifiedShortnames()
		}
		if !cmd.HasParent() {
			return fmt.Errorf("unknown flag %s (global flags: %s)", name, strings.Join(globalNames(), ", "))
		}
		return fmt.Errorf("unknown flag %s (%s)", name, ownFlags(cmd))
	case errors.As(err, &required):
		f := required.GetFlag()
		return fmt.Errorf("--%s needs a value (--%s %s)", f.Name, f.Name, placeholder(f))
	case errors.As(err, &invalid):
		want := "a valid value"
		switch placeholder(invalid.GetFlag()) {
		case "N":
			want = "a whole number"
		case "":
			want = "true or false"
		}
		return fmt.Errorf("--%s %q: want %s", invalid.GetFlag().Name, invalid.GetValue(), want)
	}
	return err
}

// isFlagError says whether err is pflag's.
func isFlagError(err error) bool {
	var (
		notExist *pflag.NotExistError
		required *pflag.ValueRequiredError
		invalid  *pflag.InvalidValueError
		syntax   *pflag.InvalidSyntaxError
	)
	return errors.As(err, &notExist) || errors.As(err, &required) || errors.As(err, &invalid) || errors.As(err, &syntax)
}

// ownFlags says which flags are cmd's own.
func ownFlags(cmd *cobra.Command) string {
	var out []string
	cmd.LocalNonPersistentFlags().VisitAll(func(f *pflag.Flag) {
		if !f.Hidden {
			out = append(out, "--"+f.Name)
		}
	})
	if len(out) == 0 {
		return "it takes only the global flags"
	}
	return "its flags: " + strings.Join(out, ", ") + " and the global ones"
}

// placeholder is how the value of f is written in help: its enum words,
// the word in `backquotes` of its usage, N for numbers, "" for booleans.
func placeholder(f *pflag.Flag) string {
	if e, ok := enums[f.Name]; ok {
		return strings.Join(e.values, "|")
	}
	switch name, _ := pflag.UnquoteUsage(f); name {
	case "":
		return ""
	case "int", "uint", "float":
		return "N"
	case "string":
		return strings.ToUpper(f.Name)
	case "duration":
		return "DURATION"
	default:
		return name
	}
}

// goFlagSyntax lets the command line be written as for Go's flag package,
// as it was before udmgctl used cobra: -name for --name (-help, -status
// DONE) and --h for -h. valued are the flags that take a value, whose
// values are left alone.
func goFlagSyntax(args []string, valued map[string]bool) []string {
	out := slices.Clone(args)
	for i := 0; i < len(out); i++ {
		a := out[i]
		switch {
		case a == "--":
			return out
		case a == "--h":
			out[i] = "-h"
			continue
		case len(a) > 2 && a[0] == '-' && a[1] != '-' && (a[1] >= 'a' && a[1] <= 'z' || a[1] >= 'A' && a[1] <= 'Z'):
			a = "-" + a
			out[i] = a
		}
		if name, ok := strings.CutPrefix(a, "--"); ok && !strings.Contains(name, "=") && valued[name] {
			i++
		}
	}
	return out
}

// valuedFlags are the flags of the tree that take a value; a flag name
// means the same kind of flag in every command, or goFlagSyntax and the
// completion could not tell.
func valuedFlags(root *cobra.Command) map[string]bool {
	valued := map[string]bool{}
	walk(root, func(cmd *cobra.Command) {
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			v := f.NoOptDefVal == ""
			if was, seen := valued[f.Name]; seen && was != v {
				panic(fmt.Sprintf("udmgctl %s: flag --%s takes a value in one command and not in another", cmd.CommandPath(), f.Name))
			}
			valued[f.Name] = v
		})
	})
	return valued
}

const usageHead = `udmgctl administers a UDMG gateway cluster over its REST API.

Usage: udmgctl [global flags] COMMAND [flags] [args]
       udmgctl COMMAND -h     (or udmgctl help COMMAND) for one command's flags

Commands:
`

const usageTail = `
Global flags (also accepted after the command):
  --addr URL         API address (env UDMGCTL_ADDR, default http://127.0.0.1:8080)
  --user NAME        user name (env UDMGCTL_USER, default admin)
  --password PW      password (env UDMGCTL_PASSWORD)
  --token T          bearer token instead of a password (env UDMGCTL_TOKEN)
  --json             print the API's JSON instead of tables

Permissions are written like file modes per domain (administration, servers,
partners, rules, users, transfers): r read, w write, d delete, - none.
Enumerated values (--status, --protocol, --direction, --kind) may be given in any case.
`

// help is every command's -h (and udmgctl help): the root lists every
// command, a group its subcommands, a command its synopsis and flags.
func (c *cli) help(cmd *cobra.Command, _ []string) {
	w := cmd.OutOrStdout()
	switch {
	case !cmd.HasParent() || cmd == c.helpCmd:
		io.WriteString(w, usageHead)
		listCommands(w, leaves(cmd.Root()))
		io.WriteString(w, usageTail)
	case cmd.HasSubCommands():
		fmt.Fprintf(w, "Usage: udmgctl %s SUBCOMMAND [flags] [args]\n       udmgctl %s SUBCOMMAND -h for its flags\n\nCommands:\n", cmd.Name(), cmd.Name())
		listCommands(w, leaves(cmd))
	default:
		writeCommandHelp(w, cmd)
	}
}

// leaves are the commands under cmd that run something, in table order.
func leaves(cmd *cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	for _, sub := range cmd.Commands() {
		switch {
		case !sub.IsAvailableCommand():
		case sub.HasSubCommands():
			out = append(out, leaves(sub)...)
		default:
			out = append(out, sub)
		}
	}
	return out
}

// line is how help writes cmd: its words and synopsis.
func line(cmd *cobra.Command) string {
	path := strings.TrimPrefix(cmd.Parent().CommandPath()+" ", "udmgctl ")
	return path + cmd.Use
}

// listCommands writes one line a command, its summary at column 37 (on
// the next line after a long synopsis).
func listCommands(w io.Writer, cmds []*cobra.Command) {
	const column = 37
	for _, cmd := range cmds {
		l := "  " + line(cmd)
		if len(l) < column-1 {
			fmt.Fprintf(w, "%-*s%s\n", column, l, cmd.Short)
		} else {
			fmt.Fprintf(w, "%s\n%*s%s\n", l, column, "", cmd.Short)
		}
	}
}

// writeCommandHelp is `udmgctl COMMAND -h`: its synopsis, what it does and
// its own flags.
func writeCommandHelp(w io.Writer, cmd *cobra.Command) {
	fmt.Fprintf(w, "Usage: udmgctl %s\n\n%s.\n", line(cmd), upperFirst(cmd.Short))
	if cmd.Long != "" {
		fmt.Fprintf(w, "%s\n", cmd.Long)
	}
	own := false
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	cmd.LocalNonPersistentFlags().VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		if !own {
			fmt.Fprintf(w, "\nFlags:\n")
			own = true
		}
		_, text := pflag.UnquoteUsage(f)
		if _, ok := enums[f.Name]; ok {
			text += " (any case)"
		}
		fmt.Fprintf(tw, "  %s\t%s\n", strings.TrimSpace("--"+f.Name+" "+placeholder(f)), text)
	})
	tw.Flush()
	fmt.Fprintf(w, "\nGlobal flags: --addr URL, --user NAME, --password PW, --token T, --json (see udmgctl help)\n")
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
