package cachepolicy

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// walk calls visit for root and, depth first, for every message below it:
// every populated message field, list element, map value and oneof member.
// The parse tree has some 270 node types; walking the descriptor instead of
// naming fields means a node type added by a new pg_query is still visited.
// When visit returns false, the messages below that one are skipped.
func walk(root proto.Message, visit func(proto.Message) bool) {
	if root == nil {
		return
	}
	walkReflect(root.ProtoReflect(), visit)
}

func walkReflect(m protoreflect.Message, visit func(proto.Message) bool) {
	if !m.IsValid() || !visit(m.Interface()) {
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					walkReflect(mv.Message(), visit)
					return true
				})
			}
		case fd.IsList():
			if fd.Message() != nil {
				l := v.List()
				for i := range l.Len() {
					walkReflect(l.Get(i).Message(), visit)
				}
			}
		case fd.Message() != nil:
			walkReflect(v.Message(), visit)
		}
		return true
	})
}

// appendRel appends rv's relname, if rv is set.
func appendRel(dst []string, rv *pg_query.RangeVar) []string {
	if rv == nil || rv.Relname == "" {
		return dst
	}
	return append(dst, rv.Relname)
}

// funcName is the last element of a function's qualified name, as parsed:
// folded to lower case unless it was quoted.
func funcName(fc *pg_query.FuncCall) string {
	return lastString(fc.GetFuncname(), 0)
}

// lastString returns the String node skip places from the end of names,
// or "" when there is none.
func lastString(names []*pg_query.Node, skip int) string {
	i := len(names) - 1 - skip
	if i < 0 {
		return ""
	}
	return names[i].GetString_().GetSval()
}

// stringConst returns the text of a string constant.
func stringConst(n *pg_query.Node) (string, bool) {
	c := n.GetAConst()
	if c == nil || c.GetSval() == nil {
		return "", false
	}
	return c.GetSval().GetSval(), true
}
