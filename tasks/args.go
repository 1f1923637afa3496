package tasks

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"
)

// args are a task's arguments as decoded from JSON.
type args map[string]any

// checkKind refuses a value of the wrong JSON kind or one that does not
// parse (a pattern, a duration, a value outside oneOf).
func checkKind(d arg, v any) error {
	switch d.kind {
	case kString, kGlob, kRegexp, kDuration:
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("must be a string, not %s", jsonKind(v))
		}
		if d.required && strings.TrimSpace(s) == "" {
			return errors.New("must not be empty")
		}
		switch {
		case d.kind == kGlob:
			if _, err := path.Match(s, ""); err != nil {
				return fmt.Errorf("pattern %q: %w", s, err)
			}
		case d.kind == kRegexp:
			if _, err := regexp.Compile(s); err != nil {
				return fmt.Errorf("regexp: %w", err)
			}
		case d.kind == kDuration:
			if dur, err := time.ParseDuration(s); err != nil || dur <= 0 {
				return fmt.Errorf("%q is not a positive duration (like \"30s\")", s)
			}
		case d.oneOf != nil && !slices.Contains(d.oneOf, strings.ToLower(s)):
			return fmt.Errorf("%q is not one of %s", s, strings.Join(d.oneOf, ", "))
		}
	case kStrings:
		if _, ok := v.(string); ok {
			return nil
		}
		if _, err := stringList(v); err != nil {
			return err
		}
	case kNumber:
		n, ok := number(v)
		if !ok {
			return fmt.Errorf("must be a number, not %s", jsonKind(v))
		}
		if n < 0 || n != math.Trunc(n) {
			return fmt.Errorf("%v is not a non-negative integer", n)
		}
	case kBool:
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("must be true or false, not %s", jsonKind(v))
		}
	case kHeaders:
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("must be an object of strings, not %s", jsonKind(v))
		}
		for k, hv := range m {
			if _, ok := hv.(string); !ok {
				return fmt.Errorf("%q must be a string, not %s", k, jsonKind(hv))
			}
		}
	}
	return nil
}

func stringList(v any) ([]string, error) {
	switch l := v.(type) {
	case []string:
		return l, nil
	case []any:
		out := make([]string, len(l))
		for i, e := range l {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("element %d must be a string, not %s", i, jsonKind(e))
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, fmt.Errorf("must be a string or a list of strings, not %s", jsonKind(v))
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case float64, int, int64, json.Number:
		return "a number"
	case []any, []string:
		return "a list"
	case map[string]any:
		return "an object"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// The getters below read arguments Validate has checked.

func (a args) str(name string) string {
	s, _ := a[name].(string)
	return s
}

func (a args) has(name string) bool {
	v, ok := a[name]
	return ok && v != nil
}

func (a args) strs(name string) []string {
	if s, ok := a[name].(string); ok {
		return []string{s}
	}
	l, _ := stringList(a[name])
	return l
}

func (a args) num(name string, def int64) int64 {
	if n, ok := number(a[name]); ok {
		return int64(n)
	}
	return def
}

func (a args) flag(name string, def bool) bool {
	if b, ok := a[name].(bool); ok {
		return b
	}
	return def
}

func (a args) duration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(a.str(name)); err == nil {
		return d
	}
	return def
}

// exclusive refuses two arguments given together.
func (a args) exclusive(x, y string) error {
	if a.has(x) && a.has(y) {
		return fmt.Errorf("arguments %q and %q exclude each other", x, y)
	}
	return nil
}
