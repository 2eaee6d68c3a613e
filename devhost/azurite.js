// Azurite, as `node_modules/.bin/azurite` starts it, with its garbage collectors' sweep every 30 minutes instead
// of every minute (queue) or ten (blob).
//
// Azurite's queue GC walks every message it ever stored and blocks its event loop meanwhile: measured here with
// 20,000 messages sent and deleted, each sweep took 19-37 s, and a 5,000-call bench drain showed a 10-20 s
// silence of every storage request about every 70 s. Azure Storage has no such pause; a stack that imitates it
// would make every deep-backlog measurement (and every long test) wait on the emulator, not on the app.
// The interval is each manager's default argument, read from these constants when Azurite builds it.
"use strict";
const path = require("path");
const root = path.join(__dirname, "..", "node_modules", "azurite", "dist", "src");
const SWEEP_MS = 30 * 60 * 1000;
require(path.join(root, "queue", "utils", "constants")).DEFAULT_GC_INTERVAL_MS = SWEEP_MS;
require(path.join(root, "blob", "utils", "constants")).DEFAULT_GC_INTERVAL_MS = SWEEP_MS;
require(path.join(root, "azurite.js"));
