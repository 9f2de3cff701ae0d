package config

import (
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// schemaNode describes one key of a document. The tree is derived from
// Config's toml tags, so the checker and go-toml's decoder cannot disagree on
// a name.
type schemaNode struct {
	typ reflect.Type
	// want says what the key accepts, for messages.
	want string
	// kinds are the TOML value kinds a leaf accepts; nil for a table.
	kinds []unstable.Kind
	// text is set when values of a string kind go through the type's
	// UnmarshalText, which can refuse them.
	text bool
	// keys and children describe a table, keys in declaration order.
	keys     []string
	children map[string]*schemaNode
}

var textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()

// schema is the tree of Config, built once.
var schema = newSchemaNode(reflect.TypeFor[Config]())

func newSchemaNode(t reflect.Type) *schemaNode {
	n := &schemaNode{typ: t}
	switch {
	case t == reflect.TypeFor[ByteSize]():
		n.want, n.kinds = sizeWant, []unstable.Kind{unstable.Integer, unstable.String}
	case t == reflect.TypeFor[Duration]():
		// An integer would be taken as nanoseconds by the decoder: refused.
		n.want, n.kinds = durationWant, []unstable.Kind{unstable.String}
	case t.Kind() == reflect.String:
		n.want, n.kinds = "a string", []unstable.Kind{unstable.String}
	case t.Kind() == reflect.Bool:
		n.want, n.kinds = "true or false", []unstable.Kind{unstable.Bool}
	case t.Kind() == reflect.Int:
		n.want, n.kinds = "an integer", []unstable.Kind{unstable.Integer}
	case t.Kind() == reflect.Struct:
		n.want = "a table"
		n.children = map[string]*schemaNode{}
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			n.keys = append(n.keys, name)
			n.children[name] = newSchemaNode(f.Type)
		}
	default:
		// A new field of an unsupported type must fail every test at once.
		panic(fmt.Sprintf("config: no schema for type %s", t))
	}
	n.text = n.kinds != nil && reflect.PointerTo(t).Implements(textUnmarshalerType)
	return n
}

// isTable reports whether n describes a table.
func (n *schemaNode) isTable() bool {
	return n.children != nil
}

// accepts reports whether a leaf takes a value of kind k.
func (n *schemaNode) accepts(k unstable.Kind) bool {
	return slices.Contains(n.kinds, k)
}

// kindName names a TOML value kind for messages.
func kindName(k unstable.Kind) string {
	switch k {
	case unstable.String:
		return "a string"
	case unstable.Integer:
		return "an integer"
	case unstable.Float:
		return "a float"
	case unstable.Bool:
		return "a boolean"
	case unstable.Array:
		return "an array"
	case unstable.InlineTable, unstable.Table:
		return "a table"
	case unstable.ArrayTable:
		return "an array of tables"
	case unstable.DateTime, unstable.LocalDateTime, unstable.LocalDate, unstable.LocalTime:
		return "a date or time"
	default:
		return k.String()
	}
}
