package tasks

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidate decodes tasks as the API receives them (JSON) and checks
// that each bad one is refused with an error naming the argument and the
// problem, and that the good ones pass.
func TestValidate(t *testing.T) {
	cases := []struct {
		name, task string
		want       string // "" : valid
	}{
		{"unknown type", `{"type":"FROBNICATE"}`, `unknown task type "FROBNICATE"`},
		{"empty type", `{"type":""}`, "unknown task type"},
		{"lower-case type", `{"type":"move","args":{"path":"archive"}}`, ""},
		{"missing argument", `{"type":"MOVE"}`, `MOVE: argument "path" is required`},
		{"empty required argument", `{"type":"COPY","args":{"path":" "}}`, `argument "path": must not be empty`},
		{"wrong kind", `{"type":"RENAME","args":{"path":3}}`, `argument "path": must be a string, not a number`},
		{"unknown argument", `{"type":"MOVE","args":{"path":"a","dest":"b"}}`, `unknown argument "dest"`},
		{"DELETE takes none", `{"type":"DELETE","args":{"path":"x"}}`, `unknown argument "path" (known: none)`},
		{"unknown variable", `{"type":"RENAME","args":{"path":"out/#TRUEFILNAME#"}}`, `unknown variable #TRUEFILNAME#`},
		{"known variables", `{"type":"RENAME","args":{"path":"out/#DATE#-#HOUR#-#TRUEFILENAME#.#1#"}}`, ""},
		{"bad glob", `{"type":"CHECK","args":{"namePattern":"[a-"}}`, `argument "namePattern": pattern "[a-"`},
		{"bad regexp", `{"type":"CHECK","args":{"nameRegexp":"(a"}}`, `argument "nameRegexp": regexp: error parsing regexp`},
		{"CHECK without a rule", `{"type":"CHECK"}`, "give at least one of"},
		{"CHECK sizes reversed", `{"type":"CHECK","args":{"minSize":10,"maxSize":5}}`, "minSize 10 is above maxSize 5"},
		{"negative size", `{"type":"CHECK","args":{"maxSize":-1}}`, `argument "maxSize": -1 is not a non-negative integer`},
		{"CHECK", `{"type":"CHECK","args":{"namePattern":"*.csv","maxSize":1048576}}`, ""},
		{"EXEC timeout", `{"type":"EXEC","args":{"path":"/bin/true","timeout":"soon"}}`, `argument "timeout": "soon" is not a positive duration`},
		{"EXEC args kind", `{"type":"EXEC","args":{"path":"/bin/true","args":[1]}}`, `argument "args": element 0 must be a string, not a number`},
		{"EXEC Waarp", `{"type":"EXEC","args":{"path":"/bin/echo","args":"#TRUEFULLPATH# done","delay":5000}}`, ""},
		{"EXEC list", `{"type":"EXEC","args":{"path":"/bin/echo","args":["a b","c"],"timeout":"30s"}}`, ""},
		{"WEBHOOK url", `{"type":"WEBHOOK","args":{"url":"ftp://example.net/x"}}`, `argument "url": "ftp://example.net/x" is not an http or https URL`},
		{"WEBHOOK attempts", `{"type":"WEBHOOK","args":{"url":"http://h/x","attempts":0}}`, `"attempts": 0 is not between 1 and 20`},
		{"WEBHOOK headers", `{"type":"WEBHOOK","args":{"url":"http://h/x","headers":{"X-N":1}}}`, `argument "headers": "X-N" must be a string`},
		{"WEBHOOK", `{"type":"webhook","args":{"url":"https://h/hook","headers":{"Authorization":"Bearer t"},"attempts":3}}`, ""},
		{"ARCHIVE format", `{"type":"ARCHIVE","args":{"path":"a.rar","format":"rar"}}`, `argument "format": "rar" is not one of zip, tar.gz`},
		{"ARCHIVE unknown extension", `{"type":"ARCHIVE","args":{"path":"a.rar"}}`, `cannot tell the format of a.rar`},
		{"ARCHIVE", `{"type":"ARCHIVE","args":{"path":"archive/#TRUEFILENAME#.tgz"}}`, ""},
		{"SIGN mode", `{"type":"SIGN","args":{"key":"k","mode":"clear"}}`, `argument "mode": "clear" is not one of detached, inline`},
		{"ENCRYPT key kind", `{"type":"ENCRYPT","args":{"key":true}}`, `argument "key": must be a string or a list of strings, not a boolean`},
		{"ENCRYPT to two keys", `{"type":"ENCRYPT","args":{"key":["acme","archive"],"armor":true}}`, ""},
		{"ENCRYPT armor kind", `{"type":"ENCRYPT","args":{"key":"k","armor":"yes"}}`, `argument "armor": must be true or false, not a string`},
		{"VERIFY inline with signature", `{"type":"VERIFY","args":{"key":"k","mode":"inline","signature":"x.sig"}}`, `"mode" and "signature" exclude each other`},
		{"CHECKSUM both", `{"type":"CHECKSUM","args":{"expect":"00","sidecar":"x.sha256"}}`, `"expect" and "sidecar" exclude each other`},
		{"CHECKSUM bad hex", `{"type":"CHECKSUM","args":{"expect":"xyz"}}`, `"xyz" is not a sha256`},
		{"TRANSFER missing to", `{"type":"TRANSFER","args":{"as":"bob","rule":"out"}}`, `TRANSFER: argument "to" is required`},
		{"TRANSFER", `{"type":"TRANSFER","args":{"to":"bank","as":"bob","rule":"out"}}`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var task Task
			if err := json.Unmarshal([]byte(tc.task), &task); err != nil {
				t.Fatal(err)
			}
			err := Validate(task)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate(%s) = %v, want nil", tc.task, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate(%s) = %v, want an error containing %q", tc.task, err, tc.want)
			}
		})
	}
	if err := Validate(Task{Type: "nope"}); !errors.Is(err, ErrUnknownType) {
		t.Errorf("unknown type error %v is not ErrUnknownType", err)
	}
	if got := Types(); len(got) != 15 || got[0] != "ARCHIVE" || got[len(got)-1] != "WEBHOOK" {
		t.Errorf("Types() = %v", got)
	}
}

// TestSubstitute checks every variable, in strings, lists and headers.
func TestSubstitute(t *testing.T) {
	f := facts("in/report.csv")
	f.OriginalName = "Report.CSV"
	f.Filesize = 1234
	f.ErrorCode, f.ErrorMsg = "TeDataTransfer", "connection reset"
	a := substitute(map[string]any{
		"path":    "#TRUEFULLPATH#|#TRUEFILENAME#|#ORIGINALFILENAME#|#FILESIZE#|#RULE#|#PARTNER#|#ACCOUNT#",
		"args":    []any{"#DATE#", "#HOUR#", "#REMOTEHOST#", "#TRANSFERID#", "#ERRORMSG#", "#ERRORCODE#", "#UNKNOWN#"},
		"headers": map[string]any{"X-Id": "t#TRANSFERID#"},
		"n":       3.0,
	}, f, "/gw")
	want := filepath.Join("/gw", "in/report.csv") + "|report.csv|Report.CSV|1234|inbound|acme|alice"
	if got := a.str("path"); got != want {
		t.Errorf("path = %q, want %q", got, want)
	}
	wantArgs := []string{"20261201", "090807", "192.0.2.7", "42", "connection reset", "TeDataTransfer", "#UNKNOWN#"}
	if got := a.strs("args"); strings.Join(got, ",") != strings.Join(wantArgs, ",") {
		t.Errorf("args = %q, want %q", got, wantArgs)
	}
	if got := a["headers"].(map[string]any)["X-Id"]; got != "t42" {
		t.Errorf("header = %v", got)
	}
	if a.num("n", 0) != 3 {
		t.Errorf("a number was changed: %v", a["n"])
	}
}
