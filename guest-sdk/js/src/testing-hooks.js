// Node module hooks for `eddy/testing`: the WIT imports of a component
// (`eddy:operator/...`) resolve to the in-memory host.

const MEMORY_HOST = new URL("./memory-host.js", import.meta.url).href;

export async function resolve(specifier, context, next) {
  if (specifier.startsWith("eddy:operator/")) return { url: MEMORY_HOST, shortCircuit: true };
  return next(specifier, context);
}
