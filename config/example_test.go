package config

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite deploy/server.ini.example (and other golden files) from the code")

// TestExample: the checked-in deploy/server.ini.example is what Example
// writes from the settings table; every row has its meaning; and the file
// with every key uncommented loads into exactly Default().
func TestExample(t *testing.T) {
	path := filepath.Join("..", ExampleFile)
	for _, s := range settings {
		if strings.TrimSpace(s.doc) == "" {
			t.Errorf("[%s] %s has no doc string in the settings table (config/load.go)", s.section, s.key)
		}
		if _, err := defaultValue(Default(), s); err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		return
	}
	want := Example()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (write it with: go test ./config -run TestExample -update)", err)
	}
	if string(got) != want {
		t.Fatalf("%s differs from what the settings table generates (%s); regenerate it with:\n\tgo test ./config -run TestExample -update",
			ExampleFile, firstDifference(string(got), want))
	}

	keys := regexp.MustCompile(`(?m)^;([A-Za-z]+ =)`)
	if n := len(keys.FindAllString(want, -1)); n != len(settings) {
		t.Fatalf("the example has %d keys, the table %d", n, len(settings))
	}
	live := filepath.Join(t.TempDir(), "server.ini")
	if err := os.WriteFile(live, []byte(keys.ReplaceAllString(want, "$1")), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(live, nil)
	if err != nil {
		t.Fatalf("the example with every key uncommented: %v", err)
	}
	c.File, c.origins = "", nil
	if def := Default(); !reflect.DeepEqual(c, def) {
		t.Fatalf("the example's values are not the defaults:\n got %+v\nwant %+v", c, def)
	}
}

func firstDifference(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d: file has %q, the table makes %q", i+1, gl, wl)
		}
	}
	return "no line differs"
}
