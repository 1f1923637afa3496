package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/udmg/gateway/httpapi/wire"
)

// secretsRotate is `udmgctl secrets rotate`: a new data key for the
// cluster, every sealed value resealed under it in one committed change.
func (c *cli) secretsRotate([]string) error {
	resp, err := c.call("POST", "/api/secrets/rotate", nil)
	if err != nil {
		return err
	}
	if c.json {
		c.printJSON(resp.body)
		return nil
	}
	var rot wire.SecretsRotation
	if err := json.Unmarshal(resp.body, &rot); err != nil {
		return fmt.Errorf("POST /api/secrets/rotate: unexpected answer: %w", err)
	}
	fmt.Fprintf(c.stdout, "secrets key rotated: generation %d, %d sealed values resealed\n", rot.Generation, rot.Resealed)
	return nil
}

// secretsPut is `udmgctl secrets add|update NAME --value-file FILE`: a
// secret of the tasks (#SECRET:NAME#), read from a file so that it never
// shows in a command line or a shell history.
func (c *cli) secretsPut(cmd string) func(fs *pflag.FlagSet) func([]string) error {
	return func(fs *pflag.FlagSet) func([]string) error {
		file := fs.String("value-file", "", "file holding the secret (its first line)")
		return func(pos []string) error {
			if *file == "" {
				return fmt.Errorf("%s: --value-file is required", cmd)
			}
			value, err := firstLine(cmd+": --value-file", *file)
			if err != nil {
				return err
			}
			if cmd == "secrets add" {
				return c.create("/api/task-secrets", map[string]any{"name": pos[0], "value": value}, "secret "+pos[0])
			}
			resp, err := c.callJSON("PUT", "/api/task-secrets/"+url.PathEscape(pos[0]), map[string]any{"value": value}, nil)
			if err != nil {
				return err
			}
			if c.json {
				c.printJSON(resp.body)
				return nil
			}
			fmt.Fprintln(c.stdout, "secret "+pos[0]+" updated")
			return nil
		}
	}
}

// firstLine is the first line of file (without its line end): a secret
// given in a file. what names the flag in errors.
func firstLine(what, file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", fmt.Errorf("%s: %s: the first line is empty", what, file)
	}
	return line, nil
}
