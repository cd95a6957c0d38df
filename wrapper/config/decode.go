package config

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The config is decoded by walking the yaml.Node tree against the raw structs
// ourselves, instead of node.Decode: yaml.v3's KnownFields is lost inside
// custom unmarshalers, and a walk of our own checks every mapping key at every
// nesting level and names the field path and line of each error. CONFIG JSON
// is valid YAML, so it gets the same checks and positions.

// KV is one key/value pair of a mapping whose order matters (envs, logLabels).
type KV struct {
	Key, Value string
	Line       int
}

// KVList is a mapping of string to string kept in the order it was written.
type KVList []KV

var (
	kvListType   = reflect.TypeOf(KVList(nil))
	durationType = reflect.TypeOf(Duration(0))
)

// decoder walks nodes into values and collects every error it finds, so that
// one run of the loader reports all the mistakes of a config.
type decoder struct {
	errs []error
	// bad holds the top-level fields that failed to decode; once
	// validating, an error about one of them is not reported again (it
	// would only say that the field is missing or zero)
	bad        map[string]bool
	validating bool
	// offHost: the config is checked away from the host it runs on
	// (process-wrapper check in CI): what only the host can tell (users,
	// env files) is a warning
	offHost bool
	warns   []error
}

// hostFail reports a mistake that depends on the host: an error, or a
// warning when the config is checked off the host.
func (d *decoder) hostFail(n *yaml.Node, path, format string, a ...any) {
	if d.offHost {
		d.warns = append(d.warns, &FieldError{Line: n.Line, Column: n.Column, Field: path, Msg: fmt.Sprintf(format, a...)})
		return
	}
	d.fail(n, path, format, a...)
}

func (d *decoder) fail(n *yaml.Node, path, format string, a ...any) {
	root := path
	if i := strings.IndexAny(root, ".["); i >= 0 {
		root = root[:i]
	}
	if d.validating && d.bad[root] {
		return
	}
	if !d.validating {
		if d.bad == nil {
			d.bad = map[string]bool{}
		}
		d.bad[root] = true
	}
	d.errs = append(d.errs, &FieldError{Line: n.Line, Column: n.Column, Field: path, Msg: fmt.Sprintf(format, a...)})
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return fmt.Sprintf("%s %q", strings.TrimPrefix(n.Tag, "!!"), n.Value)
	}
	return "nothing"
}

func joinPath(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// fieldsOf maps the yaml names of struct type t to field indexes.
func fieldsOf(t reflect.Type) (map[string]int, []string) {
	m := make(map[string]int, t.NumField())
	var names []string
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("yaml")
		if tag == "" || tag == "-" {
			continue
		}
		m[tag] = i
		names = append(names, tag)
	}
	return m, names
}

// decode stores node n into v (settable), checking kinds and keys.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty field is the same as an absent one
	}
	if v.Type() == kvListType {
		d.decodeKVList(n, v, path)
		return
	}
	if v.Type() == durationType {
		dur, err := time.ParseDuration(n.Value)
		if n.Kind != yaml.ScalarNode || err != nil || dur < 0 {
			d.fail(n, path, "want a duration such as 500ms, 30s or 1m30s, got %s", kindName(n))
			return
		}
		v.SetInt(int64(dur))
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		nv := reflect.New(v.Type().Elem())
		d.decode(n, nv.Elem(), path)
		v.Set(nv)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, "expected a mapping, got %s", kindName(n))
			return
		}
		fields, names := fieldsOf(v.Type())
		seen := make(map[string]int, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if first, dup := seen[k.Value]; dup {
				d.fail(k, joinPath(path, k.Value), "duplicate field (first at line %d)", first)
				continue
			}
			seen[k.Value] = k.Line
			idx, ok := fields[k.Value]
			if !ok {
				d.fail(k, joinPath(path, k.Value), "unknown field (known fields: %s)", strings.Join(names, ", "))
				continue
			}
			d.decode(val, v.Field(idx), joinPath(path, k.Value))
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "expected a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "expected a string, got %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Int, reflect.Int32, reflect.Int64:
		// a quoted number ("10") is a string, as the Kubernetes API
		// server sees it: a wrong type, not a number
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			d.fail(n, path, "expected an integer, got %s", kindName(n))
			return
		}
		i, err := strconv.ParseInt(n.Value, 0, 64)
		if err != nil || v.OverflowInt(i) {
			d.fail(n, path, "expected an integer, got %q", n.Value)
			return
		}
		// kubelet's seconds fields are int32: beyond, a duration in
		// nanoseconds overflows (a probe that always fails, spins, or
		// skips its delay)
		if strings.HasSuffix(path, "Seconds") && (i > math.MaxInt32 || i < math.MinInt32) {
			d.fail(n, path, "must be at most %d seconds (an int32, as in Kubernetes), got %s", math.MaxInt32, n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.fail(n, path, "expected true or false, got %s", kindName(n))
			return
		}
		b, err := strconv.ParseBool(n.Value)
		if err != nil {
			// YAML 1.1 spellings that yaml.v3 tags as bool (yes, on, ...)
			b = strings.EqualFold(n.Value, "yes") || strings.EqualFold(n.Value, "on")
		}
		v.SetBool(b)
	default:
		d.fail(n, path, "internal: cannot decode into %s", v.Type())
	}
}

func (d *decoder) decodeKVList(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected a mapping of names to strings, got %s", kindName(n))
		return
	}
	var out KVList
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if first, dup := seen[k.Value]; dup {
			d.fail(k, joinPath(path, k.Value), "duplicate key (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		if val.Kind == yaml.AliasNode {
			val = val.Alias
		}
		p := joinPath(path, k.Value)
		if val.Kind != yaml.ScalarNode {
			d.fail(val, p, "expected a string, got %s", kindName(val))
			continue
		}
		s := val.Value
		if val.Tag == "!!null" {
			s = ""
		}
		out = append(out, KV{Key: k.Value, Value: s, Line: k.Line})
	}
	v.Set(reflect.ValueOf(out))
}
