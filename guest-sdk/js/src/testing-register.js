// `node --import eddy/src/testing-register.js --test`: lets operator modules (and the
// `eddy` package) load in Node, with the host's imports in memory.

import { register } from "node:module";

register("./testing-hooks.js", import.meta.url);
