package main

import "github.com/spf13/pflag"

// schedulesAdd is udmgctl schedules add: only the flags given are sent, so
// that the API names what a kind lacks or does not take.
func (c *cli) schedulesAdd(fs *pflag.FlagSet) func([]string) error {
	kind := fs.String("kind", "", "at, cron, watch or poll")
	fields := map[string]*string{"kind": kind}
	for _, f := range []struct{ flag, field, usage string }{
		{"rule", "rule", "the rule of the transfers it creates"},
		{"direction", "direction", "the rule's direction, when it exists both ways"},
		{"partner", "partner", "the partner of its transfers"},
		{"account", "account", "our account at the partner"},
		{"at", "at", "at: the `TIME` (RFC 3339, 2026-12-01T14:00:00Z)"},
		{"cron", "cron", "cron: the `SPEC` (5 fields, 6 with seconds, or @every 2s)"},
		{"file", "file", "at and cron: the `FILE` moved, relative to the rule's directories"},
		{"dir", "dir", "watch: the `DIR` under GatewayHome; poll: the partner's DIR"},
		{"after", "after", "poll: delete or move:DIR at the partner once fetched"},
		{"interval", "interval", "watch and poll: how often to look (`DURATION`, default 10s)"},
		{"settle", "settle", "watch and poll: how long a file must stay unchanged (`DURATION`)"},
	} {
		fields[f.field] = fs.String(f.flag, "", f.usage)
	}
	disabled := fs.Bool("disabled", false, "create it disabled")
	return func(pos []string) error {
		body := map[string]any{"name": pos[0], "enabled": !*disabled}
		for field, v := range fields {
			if *v != "" {
				body[field] = *v
			}
		}
		return c.create("/api/schedules", body, "schedule "+pos[0])
	}
}
