package luascript

import (
	"fmt"
	"strings"
)

// Rule is one of the rules a Lua file follows so that the shaker reads
// it exactly (see the package doc); its text says the rule.
type Rule string

// The rules, checked when a file is read.
const (
	RuleTopLevel    Rule = `in an include, a line of code at the top level starts a definition: "local " at column 0`
	RuleNested      Rule = `"local " at column 0 only at the top level: indent a local inside a function, block or table`
	RuleOnePerLine  Rule = `one definition per line`
	RuleName        Rule = `a definition names identifiers: "local function f(" or "local a, b = ..."`
	RuleTwice       Rule = `a name is defined once among the includes of a script`
	RuleLongBracket Rule = `no long comments or long strings ("--[[", "[[", "[=[")`
	RuleDashes      Rule = `no "--" inside a string`
	RuleString      Rule = `a string ends on the line it starts`
	RuleBalance     Rule = `brackets are closed and blocks end`
	RuleInclude     Rule = `an include names a file of include/ or "prelude", without a cycle`
)

// Error is a file that breaks a rule: it does not load.
type Error struct {
	File   string // the file's path in the file system ("include/x.lua"), or "prelude"
	Line   int    // from 1
	Rule   Rule
	Detail string // what on the line breaks it
}

func (e *Error) Error() string {
	return fmt.Sprintf("lua %s:%d: %s (rule: %s)", e.File, e.Line, e.Detail, e.Rule)
}

// checkFile checks the rules of one file: every rule but RuleTwice and
// the cycle of RuleInclude, which need the script's other files.
// include tells whether the file is an include (the prelude is one),
// whose top level the shaker cuts into definitions.
func checkFile(path, text string, include bool) error {
	var depth int    // open functions and blocks
	var brackets int // open (, {, [
	lastLine := 1
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		n := i + 1
		lastLine = n
		bad := func(r Rule, format string, args ...any) error {
			return &Error{File: path, Line: n, Rule: r, Detail: fmt.Sprintf(format, args...)}
		}
		code := strings.TrimLeft(line, " \t")
		isCode := code != "" && !strings.HasPrefix(code, "--")
		if include && isCode {
			top := depth == 0 && brackets == 0
			starts := strings.HasPrefix(line, "local ")
			if top && !starts {
				return bad(RuleTopLevel, "%q", clip(line))
			}
			if !top && starts {
				return bad(RuleNested, "%q", clip(line))
			}
			if starts {
				if _, err := defines(line); err != nil {
					return bad(RuleName, "%v", err)
				}
			}
		}
		for j := 0; j < len(line); {
			c := line[j]
			switch {
			case c == '-' && strings.HasPrefix(line[j:], "--"):
				if longBracket(line[j+2:]) {
					return bad(RuleLongBracket, "a long comment")
				}
				j = len(line)
			case c == '\'' || c == '"':
				end, ok := stringEnd(line, j)
				if !ok {
					return bad(RuleString, "a string runs past the end of the line")
				}
				if strings.Contains(line[j:end], "--") {
					return bad(RuleDashes, "%s", line[j:end])
				}
				j = end
			case c == '[' && longBracket(line[j:]):
				return bad(RuleLongBracket, "a long string")
			case c == '(' || c == '{' || c == '[':
				brackets++
				j++
			case c == ')' || c == '}' || c == ']':
				if brackets--; brackets < 0 {
					return bad(RuleBalance, "%q closes what is not open", c)
				}
				j++
			case isWordStart(c):
				k := j + 1
				for k < len(line) && isWordPart(line[k]) {
					k++
				}
				switch word := line[j:k]; word {
				case "function", "do", "if", "repeat":
					depth++
				case "end", "until":
					if depth--; depth < 0 {
						return bad(RuleBalance, "%q ends no block", word)
					}
				case "local":
					if include && j > 0 && depth == 0 && brackets == 0 {
						return bad(RuleOnePerLine, "%q", clip(line))
					}
				}
				j = k
			case c >= '0' && c <= '9':
				// A number, exponent sign and all (1e-5): no "--" in it.
				for j < len(line) && (isWordPart(line[j]) || line[j] == '.' ||
					(line[j] == '-' || line[j] == '+') && (line[j-1] == 'e' || line[j-1] == 'E')) {
					j++
				}
			default:
				j++
			}
		}
	}
	if depth != 0 || brackets != 0 {
		return &Error{File: path, Line: lastLine, Rule: RuleBalance,
			Detail: fmt.Sprintf("the file ends with %d blocks and %d brackets open", depth, brackets)}
	}
	return nil
}

// stringEnd returns the position after the string that starts at
// line[start] (a quote), and false when it does not end on the line.
func stringEnd(line string, start int) (int, bool) {
	q := line[start]
	for j := start + 1; j < len(line); j++ {
		switch line[j] {
		case '\\':
			j++ // the escaped byte; a "\" at the end runs past the line
		case q:
			return j + 1, true
		}
	}
	return len(line), false
}

// longBracket reports whether s starts a long bracket: "[" then any "="
// then "[".
func longBracket(s string) bool {
	if !strings.HasPrefix(s, "[") {
		return false
	}
	s = strings.TrimLeft(s[1:], "=")
	return strings.HasPrefix(s, "[")
}

// clip shortens a line for an error message.
func clip(line string) string {
	if len(line) > 60 {
		return line[:57] + "..."
	}
	return line
}

func isWordStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isWordPart(c byte) bool  { return isWordStart(c) || c >= '0' && c <= '9' }

// isName reports whether s is a Lua identifier.
func isName(s string) bool {
	if s == "" || !isWordStart(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isWordPart(s[i]) {
			return false
		}
	}
	return true
}

// defines returns the names a "local ..." line defines: the function of
// "local function f(", the variables of "local a, b = ...".
func defines(line string) ([]string, error) {
	rest := strings.TrimPrefix(line, "local ")
	if fn, ok := strings.CutPrefix(rest, "function "); ok {
		name, _, ok := strings.Cut(fn, "(")
		name = strings.TrimSpace(name)
		if !ok || !isName(name) {
			return nil, fmt.Errorf("%q defines no function name", clip(line))
		}
		return []string{name}, nil
	}
	vars, _, ok := strings.Cut(rest, "=")
	if !ok {
		vars, _, _ = strings.Cut(rest, "--")
	}
	var out []string
	for _, v := range strings.Split(vars, ",") {
		v = strings.TrimSpace(v)
		if !isName(v) {
			return nil, fmt.Errorf("%q: %q is not a name", clip(line), v)
		}
		out = append(out, v)
	}
	return out, nil
}
