/**
 * Reading flannel's JSON (the network config, lease values, BackendData) the way flanneld
 * reads it: with Go's encoding/json, whose object keys match struct fields regardless of case.
 */

/**
 * The value flanneld's json.Unmarshal leaves in the struct field `name` (ASCII, flannel's
 * spelling) of `object`: the value of the last key that matches it, exactly or in another
 * case; undefined when none does. Of `{"Network":"10.1.0.0/16","network":"10.2.0.0/16"}`
 * flanneld keeps 10.2.0.0/16, and so must we, or a mixed cluster runs two networks.
 *
 * Why the last key and not the exact one: Go's decodeState.object (encoding/json/decode.go)
 * takes the keys in order and for each looks up a field, `fields.byExactName[key]`, else
 * `fields.byFoldedName[foldName(key)]`, then decodes the value into that field, overwriting
 * what an earlier key put there. The documented "preferring an exact match" chooses between
 * fields for one key, not between keys for one field (golang/go#28190, #43664, #47984 show
 * `{"Bar":"1","bar":"2"}` giving "2"). flannel's structs have no two fields that fold
 * alike, so the preference never changes which field a key fills.
 *
 * What is not modelled: an earlier duplicate is not checked (Go refuses the whole object
 * when any one value has the wrong type; we read the last); and JSON.parse keeps one entry
 * per exact spelling, at its first position with its last value, so in
 * `{"Network":…,"network":…,"Network":…}` we take the middle value where Go takes the last.
 * `overlay config set` writes the parsed object back, so what it stores reads the same in both.
 */
export function goField(object: Record<string, unknown>, name: string): unknown {
  const folded = name.toLowerCase();
  let value: unknown;
  for (const key of Object.keys(object)) {
    // The folds that reach ASCII keep the length in UTF-16 units: a cheap first test.
    if (key === name || (key.length === name.length && foldKey(key) === folded)) {
      value = object[key];
    }
  }
  return value;
}

/**
 * Go folds with Unicode simple folding (foldName is bytes.EqualFold), under which two
 * non-ASCII letters equal ASCII ones: the long s "ſ" is "s" and the Kelvin sign "K" is "k"
 * (toLowerCase maps the Kelvin sign already), so `"Networ\u212a"` is flanneld's Network.
 * No other character folds to ASCII in Go, nor lowercases to ASCII alone in JavaScript.
 */
function foldKey(key: string): string {
  return key.toLowerCase().replaceAll("\u017f", "s");
}
