package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// checker walks a document with go-toml's parser before go-toml decodes it.
// The decoder stops at the first value it cannot store, and an operator
// fixing a configuration wants every problem at once, each with its line.
// So the checker reports unknown keys, values of the wrong type and values
// their type refuses, and records the bytes of each offending expression:
// blanked, they let the decoder and Validate still check the rest of the
// document.
type checker struct {
	p        unstable.Parser
	problems []Problem
	// lines maps the dotted key of each leaf set by the document to its line,
	// to place the problems Validate finds.
	lines map[string]int
	// blank lists the byte ranges the decoder must not see.
	blank []unstable.Range
	// syntax is set when the document is not TOML: nothing can be decoded.
	syntax bool
}

// check walks data. A table header that is refused takes the key-values
// below it along: they are neither checked nor decoded.
func (c *checker) check(data []byte) {
	c.p.Reset(data)
	c.lines = map[string]int{}
	table, path := schema, []string(nil)
	refusedFrom := -1 // start of a refused table's header line
	for c.p.NextExpression() {
		expr := c.p.Expression()
		switch expr.Kind {
		case unstable.Table, unstable.ArrayTable:
			first := firstKey(expr)
			c.blankFrom(&refusedFrom, c.lineStart(first))
			table, path = c.header(expr)
			if table == nil {
				refusedFrom = c.lineStart(first)
			}
		case unstable.KeyValue:
			if table != nil && !c.keyValue(table, path, expr) {
				c.blank = append(c.blank, expr.Raw)
			}
		}
	}
	if err := c.p.Error(); err != nil {
		c.syntax = true
		c.syntaxError(err)
		return
	}
	c.blankFrom(&refusedFrom, len(data))
}

// header resolves a [table] header to its schema node and path, or reports
// it and returns nil.
func (c *checker) header(expr *unstable.Node) (*schemaNode, []string) {
	line := c.line(firstKey(expr))
	n := schema
	var path []string
	for it := expr.Key(); it.Next(); {
		part := string(it.Node().Data)
		child := n.children[part]
		key := strings.Join(append(path, part), ".")
		switch {
		case child == nil:
			c.add(line, key, "unknown table; "+knownKeys(n, path))
			return nil, nil
		case !child.isTable():
			c.add(line, key, fmt.Sprintf("must be %s, got a table", child.want))
			return nil, nil
		}
		n, path = child, append(path, part)
	}
	if expr.Kind == unstable.ArrayTable {
		c.add(line, strings.Join(path, "."), "must be a table, got an array of tables")
		return nil, nil
	}
	return n, path
}

// keyValue checks one key = value, inside table n at path; it reports
// whether the expression is fine.
func (c *checker) keyValue(n *schemaNode, path []string, expr *unstable.Node) bool {
	line := c.line(firstKey(expr))
	path = path[:len(path):len(path)] // appends below must not share memory
	for it := expr.Key(); it.Next(); {
		part := string(it.Node().Data)
		child := n.children[part]
		key := strings.Join(append(path, part), ".")
		switch {
		case child == nil:
			c.add(line, key, "unknown key; "+knownKeys(n, path))
			return false
		case !it.IsLast() && !child.isTable():
			c.add(line, key, fmt.Sprintf("must be %s, got a table", child.want))
			return false
		}
		n, path = child, append(path, part)
	}
	return c.value(n, path, line, expr.Value())
}

// value checks the value v set for the key at path, described by n.
func (c *checker) value(n *schemaNode, path []string, line int, v *unstable.Node) bool {
	key := strings.Join(path, ".")
	if n.isTable() {
		if v.Kind != unstable.InlineTable {
			c.add(line, key, fmt.Sprintf("must be a table, got %s", kindName(v.Kind)))
			return false
		}
		ok := true
		for it := v.Children(); it.Next(); {
			ok = c.keyValue(n, path, it.Node()) && ok
		}
		return ok
	}
	if first, ok := c.lines[key]; ok {
		c.add(line, key, fmt.Sprintf("defined twice (first on line %d)", first))
		return false
	}
	if !n.accepts(v.Kind) {
		c.add(line, key, fmt.Sprintf("must be %s, got %s", n.want, kindName(v.Kind)))
		return false
	}
	if n.text && v.Kind == unstable.String {
		// The same method the decoder will call, run here so that every
		// refused value is reported, not only the first.
		u := reflect.New(n.typ).Interface().(encoding.TextUnmarshaler)
		if err := u.UnmarshalText(v.Data); err != nil {
			c.add(line, key, err.Error())
			return false
		}
	}
	c.lines[key] = line
	return true
}

// syntaxError reports a document that is not TOML.
func (c *checker) syntaxError(err error) {
	var perr *unstable.ParserError
	if !errors.As(err, &perr) {
		c.add(0, "", err.Error())
		return
	}
	line := 0
	if len(perr.Highlight) > 0 {
		line = c.p.Shape(c.p.Range(perr.Highlight)).Start.Line
	}
	c.add(line, strings.Join(perr.Key, "."), "invalid TOML: "+perr.Message)
}

// blankFrom closes a refused table's range, if one is open, at end.
func (c *checker) blankFrom(start *int, end int) {
	if *start < 0 {
		return
	}
	c.blank = append(c.blank, unstable.Range{Offset: uint32(*start), Length: uint32(end - *start)})
	*start = -1
}

// blanked returns data with the refused ranges turned into spaces. Line
// breaks stay, so the decoder's positions remain those of the document.
func (c *checker) blanked(data []byte) []byte {
	if len(c.blank) == 0 {
		return data
	}
	out := bytes.Clone(data)
	for _, r := range c.blank {
		for i := r.Offset; i < r.Offset+r.Length; i++ {
			if out[i] != '\n' && out[i] != '\r' {
				out[i] = ' '
			}
		}
	}
	return out
}

func (c *checker) add(line int, key, msg string) {
	c.problems = append(c.problems, Problem{Line: line, Key: key, Message: msg})
}

// line returns the 1-based line of a node that carries a range (keys and
// values do).
func (c *checker) line(n *unstable.Node) int {
	return c.p.Shape(n.Raw).Start.Line
}

// lineStart returns the offset of the start of the line holding n.
func (c *checker) lineStart(n *unstable.Node) int {
	return bytes.LastIndexByte(c.p.Data()[:n.Raw.Offset], '\n') + 1
}

// firstKey returns the first part of the key of a key-value or table header:
// unlike table headers, key parts always carry their range.
func firstKey(expr *unstable.Node) *unstable.Node {
	it := expr.Key()
	it.Next()
	return it.Node()
}

// knownKeys lists the keys of table n at path, for an unknown-key message.
func knownKeys(n *schemaNode, path []string) string {
	if len(path) == 0 {
		return "the top-level keys are " + strings.Join(n.keys, ", ")
	}
	return fmt.Sprintf("the keys of [%s] are %s", strings.Join(path, "."), strings.Join(n.keys, ", "))
}
