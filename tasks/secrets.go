package tasks

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// A task argument names a stored secret as #SECRET:name# (the names of
// the secrets store: a letter or digit, then letters, digits and ._@-).
// The rule keeps the reference; the value is opened from the sealed store
// (Env.Secret) when the task runs, and never written back: a task's output
// and error show the reference wherever the value appears. References are
// allowed only in the arguments that send a secret somewhere (WEBHOOK's
// headers, EXEC's args), never in a path, a URL or a pattern, where the
// value would end up in a file name, the state or a log line.
var secretRef = regexp.MustCompile(`#SECRET:([A-Za-z0-9][A-Za-z0-9._@-]{0,63})#`)

// ErrUnknownSecret marks a reference to a secret the store does not hold.
var ErrUnknownSecret = errors.New("no such secret")

// SecretRefs lists the secrets task t refers to, sorted, each once (the
// API checks that they exist when a rule is written, and keeps a secret in
// use from being deleted).
func SecretRefs(t Task) []string {
	var out []string
	for _, v := range t.Args {
		for _, s := range argStrings(v) {
			for _, m := range secretRef.FindAllStringSubmatch(s, -1) {
				out = append(out, m[1])
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// checkSecretPlace refuses a reference in an argument that may not hold
// one, and a "#SECRET:" that is not a well-formed reference.
func checkSecretPlace(d arg, v any) error {
	for _, s := range argStrings(v) {
		if !strings.Contains(s, "#SECRET:") {
			continue
		}
		if !d.secrets {
			return errors.New("#SECRET:…# is allowed only in WEBHOOK headers and EXEC args")
		}
		if rest := secretRef.ReplaceAllString(s, ""); strings.Contains(rest, "#SECRET:") {
			return fmt.Errorf("%q: a secret reference is #SECRET:name#, name of letters, digits and ._@-", s)
		}
	}
	return nil
}

// openSecrets replaces the references in the arguments that may hold them
// with the secrets' values, and returns a redactor that turns the values
// back into their references in what the task reports.
func (c *call) openSecrets() (func(string) string, error) {
	specArgs := specs[c.typ].args
	opened := map[string]string{} // value → reference
	for _, d := range specArgs {
		v, ok := c.args[d.name]
		if !ok || !d.secrets {
			continue
		}
		var failed error
		c.args[d.name] = mapStrings(v, func(s string) string {
			return secretRef.ReplaceAllStringFunc(s, func(ref string) string {
				name := secretRef.FindStringSubmatch(ref)[1]
				if c.env.Secret == nil {
					failed = fmt.Errorf("argument %q: secret %q: no secrets store on this node", d.name, name)
					return ref
				}
				val, err := c.env.Secret(name)
				if err != nil {
					failed = fmt.Errorf("argument %q: %w", d.name, err) // the store names the secret
					return ref
				}
				if val != "" {
					opened[val] = ref
				}
				return val
			})
		})
		if failed != nil {
			return nil, failed
		}
	}
	return func(s string) string {
		for val, ref := range opened {
			s = strings.ReplaceAll(s, val, ref)
		}
		return s
	}, nil
}

// redactedError is an error whose text had secret values replaced by
// their references; errors.Is still sees the original.
type redactedError struct {
	msg string
	err error
}

func (e redactedError) Error() string { return e.msg }
func (e redactedError) Unwrap() error { return e.err }
