package tasks

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// variable matches a token that looks like a substitution variable. Only
// upper-case letters and underscores count, so "#1#" in a file name is
// left alone; an unknown #NAME# is refused by Validate (a typo such as
// #TRUEFILNAME# would otherwise end up in a file name).
var variable = regexp.MustCompile(`#[A-Z_]+#`)

// varFields maps Waarp Gateway's variables to the facts (Facts.fields)
// that fill them. #TRUEFULLPATH# is absolute (a path argument may be
// absolute inside GatewayHome); #DATE# (YYYYMMDD) and #HOUR# (HHMMSS) are
// Facts.Now in its own location.
var varFields = map[string]string{
	"#TRUEFULLPATH#": "fullPath", "#TRUEFILENAME#": "filename",
	"#ORIGINALFILENAME#": "originalFilename", "#FILESIZE#": "filesize",
	"#RULE#": "rule", "#PARTNER#": "partner", "#ACCOUNT#": "account",
	"#DATE#": "date", "#HOUR#": "hour", "#REMOTEHOST#": "remoteHost",
	"#TRANSFERID#": "transferId", "#ERRORMSG#": "errorMsg", "#ERRORCODE#": "errorCode",
}

// checkVars refuses an unknown variable in a string argument (or in a
// list's or headers' strings).
func checkVars(v any) error {
	for _, s := range argStrings(v) {
		for _, tok := range variable.FindAllString(s, -1) {
			if _, ok := varFields[tok]; !ok {
				return fmt.Errorf("unknown variable %s", tok)
			}
		}
	}
	return nil
}

func argStrings(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []string:
		return x
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, argStrings(e)...)
		}
		return out
	case map[string]any:
		var out []string
		for _, e := range x {
			out = append(out, argStrings(e)...)
		}
		return out
	}
	return nil
}

// values are the variables' values for one transfer.
func values(f Facts, home string) map[string]string {
	byName := map[string]string{}
	for _, fl := range f.fields(home) {
		byName[fl.json] = fl.value
	}
	out := make(map[string]string, len(varFields))
	for v, name := range varFields {
		out[v] = byName[name]
	}
	return out
}

func baseName(p string) string {
	if p == "" {
		return ""
	}
	return filepath.Base(filepath.FromSlash(p))
}

// substitute returns a copy of the arguments with the variables replaced in
// every string (lists and headers included).
func substitute(a map[string]any, f Facts, home string) args {
	vals := values(f, home)
	repl := func(s string) string {
		if !strings.Contains(s, "#") {
			return s
		}
		return variable.ReplaceAllStringFunc(s, func(tok string) string {
			if v, ok := vals[tok]; ok {
				return v
			}
			return tok
		})
	}
	out := make(args, len(a))
	for k, v := range a {
		out[k] = mapStrings(v, repl)
	}
	return out
}

// mapStrings is a copy of an argument's value with f applied to every
// string in it (lists and headers included).
func mapStrings(v any, f func(string) string) any {
	switch x := v.(type) {
	case string:
		return f(x)
	case []string:
		out := make([]string, len(x))
		for i, e := range x {
			out[i] = f(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = mapStrings(e, f)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = mapStrings(e, f)
		}
		return out
	}
	return v
}

// fields lists the transfer's facts by name: EXEC's UDMG_* environment and
// WEBHOOK's JSON body are both made from it.
func (f Facts) fields(home string) []field {
	full := ""
	if f.Path != "" {
		full = filepath.Join(home, f.Path)
	}
	dir := "receive"
	if f.Send {
		dir = "send"
	}
	return []field{
		{"transferId", "TRANSFER_ID", strconv.FormatUint(f.TransferID, 10)},
		{"rule", "RULE", f.Rule},
		{"direction", "DIRECTION", dir},
		{"isServer", "IS_SERVER", strconv.FormatBool(f.IsServer)},
		{"partner", "PARTNER", f.Partner},
		{"account", "ACCOUNT", f.Account},
		{"path", "PATH", f.Path},
		{"fullPath", "FULLPATH", full},
		{"filename", "FILENAME", baseName(f.Path)},
		{"originalFilename", "ORIGINAL_FILENAME", baseName(f.OriginalName)},
		{"filesize", "FILESIZE", strconv.FormatInt(f.Filesize, 10)},
		{"remoteHost", "REMOTE_HOST", f.RemoteHost},
		{"errorCode", "ERROR_CODE", f.ErrorCode},
		{"errorMsg", "ERROR_MSG", f.ErrorMsg},
		{"nodeId", "NODE_ID", f.NodeID},
		{"taskKey", "TASK_KEY", f.TaskKey},
		{"date", "DATE", f.Now.Format("20060102")},
		{"hour", "HOUR", f.Now.Format("150405")},
	}
}

// field is one fact under its JSON name and its environment name (after
// the UDMG_ prefix).
type field struct {
	json, env, value string
}
