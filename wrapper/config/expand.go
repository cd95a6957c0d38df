package config

import "strings"

// Expand replaces $(VAR) in s with lookup(VAR) as Kubernetes does for
// command, args and env values: a reference to an unknown variable is left as
// written, $$ becomes a literal $ (so $$(VAR) stays $(VAR)), and a $ that
// starts neither is kept.
func Expand(s string, lookup func(string) (string, bool)) string {
	i := strings.IndexByte(s, '$')
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i >= 0 {
		b.WriteString(s[:i])
		rest := s[i+1:]
		switch {
		case rest == "":
			b.WriteByte('$')
			s = ""
		case rest[0] == '$':
			b.WriteByte('$')
			s = rest[1:]
		case rest[0] == '(':
			end := strings.IndexByte(rest, ')')
			if end < 0 {
				b.WriteString("$(")
				s = rest[1:]
				break
			}
			name := rest[1:end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
			}
			s = rest[end+1:]
		default:
			b.WriteByte('$')
			s = rest
		}
		i = strings.IndexByte(s, '$')
	}
	b.WriteString(s)
	return b.String()
}
