package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// ExampleFile is where the generated reference lives, relative to the
// module root.
const ExampleFile = "deploy/server.ini.example"

// Example is deploy/server.ini.example: every key of the settings table, in
// its order, with its meaning and its default from Default(), commented out,
// so that the reference cannot drift from what Load accepts (TestExample
// fails when the checked-in file differs).
func Example() string {
	var b strings.Builder
	b.WriteString(`; server.ini for udmg-server: every key, its default and its meaning.
;
; GENERATED from the settings table of config/load.go and config.Default();
; do not edit by hand. Regenerate with:
;   go test ./config -run TestExample -update
;
; Each key is shown commented out with its default: uncomment the ones to
; change. Any key can also be set by the environment variable shown with it
; (UDMG_<SECTION>_<KEY>), which wins over the file. Names are case-sensitive
; here; "; " and "# " start comments. Check a file without starting anything:
;   udmg-server -check-config server.ini
`)
	def := Default()
	for _, section := range sectionNames {
		fmt.Fprintf(&b, "\n[%s]\n", section)
		for _, s := range settings {
			if s.section != section {
				continue
			}
			b.WriteString("\n")
			for _, line := range wrap(s.doc+" ("+envName(s.section, s.key)+")", 76) {
				b.WriteString("; " + line + "\n")
			}
			value, err := defaultValue(def, s)
			if err != nil {
				panic(err) // a table row without its field: TestExample says which
			}
			fmt.Fprintf(&b, "%s\n", strings.TrimSpace(";"+s.key+" = "+value))
		}
	}
	return b.String()
}

// defaultValue writes the field of c that s sets, as server.ini spells it.
func defaultValue(c *Config, s setting) (string, error) {
	sec := reflect.ValueOf(c).Elem().FieldByNameFunc(func(n string) bool { return strings.EqualFold(n, s.section) })
	if !sec.IsValid() {
		return "", fmt.Errorf("[%s] %s: no Config field for section %s", s.section, s.key, s.section)
	}
	f := sec.FieldByName(s.key)
	if !f.IsValid() {
		return "", fmt.Errorf("[%s] %s: no field %s in Config.%s", s.section, s.key, s.key, sec.Type().Name())
	}
	switch v := f.Interface().(type) {
	case string:
		return v, nil
	case int:
		return strconv.Itoa(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case bool:
		return strconv.FormatBool(v), nil
	case time.Duration:
		return v.String(), nil
	case []string:
		return strings.Join(v, ", "), nil
	}
	return "", fmt.Errorf("[%s] %s: no ini form for %s", s.section, s.key, f.Type())
}

// wrap breaks text into lines of at most width bytes at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(text) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	return append(lines, line)
}
