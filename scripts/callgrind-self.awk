# Used by scripts/bench-callgrind.sh (awk -f scripts/callgrind-self.awk DUMP): one line per function,
# "instructions<TAB>name", in no order.
# Self (exclusive) instructions of every function in a callgrind dump: the cost lines under
# each fn=, less the one that follows each calls= line (the callee's inclusive cost).
# Callgrind names a function once, as `fn=(id) name` or `cfn=(id) name`, then by `(id)`.
function named(spec,   id, name) {
  id = spec; name = spec
  if (spec !~ /^\(/) return spec
  sub(/\).*/, ")", id); sub(/^\([0-9]+\) ?/, "", name)
  if (name != "") names[id] = name
  return names[id]
}
/^fn=/ { fn = named(substr($0, 4)); after_call = 0; next }
/^cfn=/ { named(substr($0, 5)); next }
/^calls=/ { after_call = 1; next }
/^[0-9+*-]/ { if (after_call) { after_call = 0; next }; self[fn] += $2; next }
END { for (f in self) if (self[f] > 0) printf "%d\t%s\n", self[f], f }
