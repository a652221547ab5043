// Package luascript assembles taskflow's Lua scripts from their files: it
// resolves their includes, keeps of each include only the definitions a
// script reaches, and renders the prelude, the tables generated from Go.
// It also assembles all the scripts as one library of Redis Functions
// (see [Library]): the helpers defined once, each script a function.
// Running the scripts is the store's business, not this package's.
//
// # Files
//
// The file system holds one script per file at its top (<name>.lua) and
// the helpers they share under include/ (include/<name>.lua). A file
// names what it includes with lines
//
//	--@include <name>
//
// where <name> is include/<name>.lua, or "prelude" for the generated
// tables (see [Prelude]). An assembled script holds each include once,
// includes of includes first, each under a comment naming its file, then
// the script's own text: what runs on the server is self-contained and
// shows what it uses.
//
// # Shaking
//
// Redis runs every definition of a script on every call, so of an include
// the loader keeps only the top-level definitions the script reaches:
// those whose names the script mentions, then those the kept ones
// mention, until nothing changes. A name counts as mentioned when it
// stands as a word outside comments and is not a field (after '.' or
// ':', where ".." and "..." are operators, not field dots); a word inside
// a string counts too, which keeps a definition for
// nothing but never drops one that is needed. A definition runs from its
// "local " line to the next one; the comments above a definition go with
// the one before it, and what an include holds before its first
// definition (its header, its includes) is left out.
//
// # Rules
//
// The shaker reads Lua line by line, not as a parser would, so the files
// follow rules that make its reading exact. Each is checked when a file
// is read: a file that breaks one fails to load with an [*Error] naming
// the file, the line and the rule.
//
//   - [RuleTopLevel]: in an include, every line of code outside any
//     function, block, table or parentheses starts a definition: "local "
//     at column 0. A statement of any other kind, an indented definition
//     or an expression continued on the next line would be cut into or
//     glued onto the wrong definition.
//   - [RuleNested]: in an include, no line inside a function, block,
//     table or parentheses starts with "local " at column 0 (the shaker
//     would cut the definition there): indent it.
//   - [RuleOnePerLine]: in an include, a definition is alone on its line:
//     no second "local" at the top level after the first.
//   - [RuleName]: in an include, a definition names identifiers:
//     "local function f(" or "local a, b = ...", no attributes.
//   - [RuleTwice]: no name is defined by two includes of one script (or
//     twice in one include): which one a use reaches would depend on
//     what else is kept.
//   - [RuleLongBracket]: no long comments ("--[[") and no long strings
//     ("[[", "[==["): the shaker would read their text as code.
//   - [RuleDashes]: no "--" inside a string: the shaker would read the
//     rest of the line as a comment and miss the names on it.
//   - [RuleString]: a string ends on the line it starts (no "\" before
//     the end of a line).
//   - [RuleBalance]: every "(", "{", "[" is closed and every function
//     and block ends (function, do, if, repeat against end, until); this
//     is how the loader knows what is top level.
//   - [RuleInclude]: an include line names a file of include/ that
//     exists ("name", without a path or ".lua"), or "prelude", and
//     includes form no cycle.
//
// The prelude, rendered from Go's tables, is checked by the same rules.
package luascript
