// node-zookeeper-client (npm, pure JavaScript: its own jute codec, and the
// pre-3.4 handshake without the read-only flag) against a ZooKeeper-protocol
// server:
//
//     node zk_scenarios.js HOST:PORT SCENARIO
//
// SCENARIO is one of SCENARIOS below.  Each prints one line per step, built
// only from what any correct server makes deterministic: data, versions,
// counts, error names, event types, zxid relations, owners as self/other/none,
// never a session id, zxid or time.  compat-tests/test_zk_node_client.py
// compares the lines exactly with what the real ZooKeeper 3.8.0 printed.
//
// Exit status: 0 after "done"; 1 on an unexpected error (its line starts
// with "ERROR"); 3 when the watchdog fires.

'use strict';

const zookeeper = require('node-zookeeper-client');

const { CreateMode, ACL, Id, Permission } = zookeeper;
const WAIT_MS = 15000;

const hosts = process.argv[2];
const scenario = process.argv[3];
const clients = [];

function p(line) {
    process.stdout.write(line + '\n');
}

function b(s) {
    return Buffer.from(s, 'utf8');
}

function s(buf) {
    return buf === null || buf === undefined ? 'null' : buf.toString('utf8');
}

// One client, connected; closed at exit.
function client(options) {
    return new Promise((resolve, reject) => {
        const c = zookeeper.createClient(hosts, Object.assign({ sessionTimeout: 10000, spinDelay: 100, retries: 0 },
            options || {}));
        clients.push(c);
        const timer = setTimeout(() => reject(new Error('not connected within ' + WAIT_MS + ' ms')), WAIT_MS);
        c.once('connected', () => {
            clearTimeout(timer);
            resolve(c);
        });
        c.connect();
    });
}

// The client's callback API as a promise of [result, stat]; errors reject with the
// client's Exception.
function call(c, method, ...args) {
    return new Promise((resolve, reject) => {
        c[method](...args, (err, ...results) => (err ? reject(err) : resolve(results)));
    });
}

// "OK" or the error's name, e.g. NO_NODE.
async function outcome(promise) {
    try {
        await promise;
        return 'OK';
    } catch (e) {
        return e.getName ? e.getName() : String(e);
    }
}

function owner(stat, c) {
    if (stat.ephemeralOwner.equals(Buffer.alloc(8))) {
        return 'none';
    }
    return stat.ephemeralOwner.equals(c.getSessionId()) ? 'self' : 'other';
}

// A Stat without zxids, times and session ids.
function stat(st, c) {
    if (!st) {
        return 'null';
    }
    return `version=${st.version} cversion=${st.cversion} aversion=${st.aversion} owner=${owner(st, c)} ` +
        `dataLength=${st.dataLength} numChildren=${st.numChildren}`;
}

// Whether zxid a (an 8-byte big-endian Buffer) is greater than b.
function after(a, b) {
    return Buffer.compare(a, b) > 0;
}

function acls(list) {
    return list.map((a) => `${a.id.scheme}:${a.id.id} perms=${a.permission}`).join('; ');
}

// Events of a watcher, as "TYPE path" strings, waited for one at a time.
class Events {
    constructor() {
        this.queue = [];
        this.waiters = [];
    }

    watcher() {
        return (event) => {
            const line = `${event.getName()} ${event.getPath()}`;
            const w = this.waiters.shift();
            if (w) {
                w(line);
            } else {
                this.queue.push(line);
            }
        };
    }

    next(what) {
        if (this.queue.length) {
            return Promise.resolve(this.queue.shift());
        }
        return new Promise((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error('timed out waiting for ' + what)), WAIT_MS);
            this.waiters.push((line) => {
                clearTimeout(timer);
                resolve(line);
            });
        });
    }

    // What else arrives within 300 ms: "none" if nothing.
    async rest() {
        await sleep(300);
        const out = this.queue.splice(0);
        return out.length ? out.join(', ') : 'none';
    }
}

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

// Waits up to WAIT_MS for cond() (may be async) to hold; returns whether it did.
async function until(cond) {
    const deadline = Date.now() + WAIT_MS;
    while (!(await cond())) {
        if (Date.now() > deadline) {
            return false;
        }
        await sleep(20);
    }
    return true;
}

// ------------------------------------------------------------------ basic

async function basic() {
    const c = await client();
    p('state: ' + c.getState().getName() + ' timeout: ' + c.getSessionTimeout());

    const [path] = await call(c, 'create', '/nzk', b('root'), CreateMode.PERSISTENT);
    p('create: ' + path);
    let [data, st] = await call(c, 'getData', '/nzk');
    p('getData: ' + s(data) + ' ' + stat(st, c));
    const czxid = st.czxid;
    [st] = await call(c, 'setData', '/nzk', b('v1'), 0);
    p('setData version 0: ' + stat(st, c) + ' mzxid>czxid=' + after(st.mzxid, czxid));
    p('setData stale version: ' + await outcome(call(c, 'setData', '/nzk', b('x'), 0)));
    [st] = await call(c, 'setData', '/nzk', b('v2'), -1);
    p('setData any version: ' + stat(st, c));
    [st] = await call(c, 'exists', '/nzk');
    p('exists: ' + stat(st, c));
    [st] = await call(c, 'exists', '/nzk/missing');
    p('exists missing: ' + stat(st, c));
    p('getData missing: ' + await outcome(call(c, 'getData', '/nzk/missing')));

    // children come in the server's order (ZooKeeper: its HashSet's)
    for (const n of ['delta', 'alpha', 'charlie', 'bravo', 'echo']) {
        await call(c, 'create', '/nzk/' + n, b(n));
    }
    let children;
    [children, st] = await call(c, 'getChildren', '/nzk');
    p('getChildren: ' + children.join(',') + ' ' + stat(st, c));
    const [seq1] = await call(c, 'create', '/nzk/s-', b('s'), CreateMode.PERSISTENT_SEQUENTIAL);
    const [seq2] = await call(c, 'create', '/nzk/s-', b('s'), CreateMode.PERSISTENT_SEQUENTIAL);
    p('sequential: ' + seq1 + ' ' + seq2);
    const [eph] = await call(c, 'create', '/nzk/e', b('e'), CreateMode.EPHEMERAL);
    [st] = await call(c, 'exists', eph);
    p('ephemeral: ' + eph + ' ' + stat(st, c));
    p('child of an ephemeral: ' + await outcome(call(c, 'create', '/nzk/e/x', b('x'))));
    const [es] = await call(c, 'create', '/nzk/es-', b(''), CreateMode.EPHEMERAL_SEQUENTIAL);
    p('ephemeral sequential: ' + es);
    p('create existing: ' + await outcome(call(c, 'create', '/nzk/alpha', b('x'))));
    p('create without parent: ' + await outcome(call(c, 'create', '/nzk/none/x', b('x'))));
    p('create bad path: ' + await outcome(new Promise((resolve, reject) => {
        try {
            c.create('nzk', b(''), (err) => (err ? reject(err) : resolve()));
        } catch (e) {
            reject(e.message ? { getName: () => 'client refused: ' + e.message } : e);
        }
    })));

    p('remove wrong version: ' + await outcome(call(c, 'remove', '/nzk/alpha', 5)));
    p('remove non-empty: ' + await outcome(call(c, 'remove', '/nzk', -1)));
    p('remove: ' + await outcome(call(c, 'remove', '/nzk/alpha', 0)));
    p('remove missing: ' + await outcome(call(c, 'remove', '/nzk/alpha', -1)));

    const [made] = await call(c, 'mkdirp', '/nzk/deep/er/path', b('m'));
    p('mkdirp: ' + made);
    let tree;
    [tree] = await call(c, 'listSubTreeBFS', '/nzk/deep');
    p('listSubTreeBFS: ' + tree.join(','));
    p('removeRecursive: ' + await outcome(call(c, 'removeRecursive', '/nzk/deep', -1)));
    [st] = await call(c, 'exists', '/nzk/deep');
    p('after removeRecursive: ' + stat(st, c));

    // ACLs
    let list;
    [list, st] = await call(c, 'getACL', '/nzk');
    p('getACL: ' + acls(list) + ' aversion=' + st.aversion);
    const readOnly = [new ACL(Permission.READ, new Id('world', 'anyone'))];
    [st] = await call(c, 'setACL', '/nzk/bravo', readOnly, 0);
    p('setACL version 0: ' + stat(st, c));
    p('setACL stale version: ' + await outcome(call(c, 'setACL', '/nzk/bravo', readOnly, 0)));
    p('setData on a read-only node: ' + await outcome(call(c, 'setData', '/nzk/bravo', b('x'), -1)));
    c.addAuthInfo('digest', b('alice:secret'));
    const mine = [new ACL(Permission.ALL, new Id('auth', ''))];
    await call(c, 'create', '/nzk/mine', b('m'), mine, CreateMode.PERSISTENT);
    [list] = await call(c, 'getACL', '/nzk/mine');
    p('auth ACL: ' + acls(list));
    const other = await client();
    p('other client getData: ' + await outcome(call(other, 'getData', '/nzk/mine')));
    p('invalid ACL: ' + await outcome(call(c, 'create', '/nzk/bad', b(''),
        [new ACL(Permission.ALL, new Id('nope', 'x'))], CreateMode.PERSISTENT)));

    // transactions
    let results;
    [results] = await call(c.transaction()
        .create('/nzk/t', b('t'))
        .create('/nzk/t/q-', b(''), CreateMode.PERSISTENT_SEQUENTIAL)
        .check('/nzk/t', 0)
        .setData('/nzk/t', b('t2'), 0)
        .remove('/nzk/charlie', -1), 'commit');
    p('transaction: ' + results.map((r) => r.type + (r.path ? ':' + r.path : '') +
        (r.stat ? ':version=' + r.stat.version : '')).join(' '));
    try {
        await call(c.transaction().create('/nzk/u', b('u')).setData('/nzk/t', b('x'), 7)
            .remove('/nzk/missing'), 'commit');
        p('failing transaction: OK?!');
    } catch (e) {
        p('failing transaction: ' + (e.getName ? e.getName() : e));
    }
    [st] = await call(c, 'exists', '/nzk/u');
    p('after the failing transaction: /nzk/u ' + stat(st, c));
    [children, st] = await call(c, 'getChildren', '/nzk');
    p('children at the end: ' + children.join(',') + ' ' + stat(st, c));
}

// ------------------------------------------------------------------ watches

async function watches() {
    const c = await client();
    const other = await client();
    const ev = new Events();
    await call(c, 'create', '/nzw', b('0'));

    let [st] = await call(c, 'exists', '/nzw/a', ev.watcher());
    p('exists watch on a missing node: ' + stat(st, c));
    await call(other, 'create', '/nzw/a', b('a'));
    p('event: ' + await ev.next('NODE_CREATED'));

    await call(c, 'getData', '/nzw/a', ev.watcher());
    await call(other, 'setData', '/nzw/a', b('a2'), -1);
    p('event: ' + await ev.next('NODE_DATA_CHANGED'));
    await call(other, 'setData', '/nzw/a', b('a3'), -1);
    p('one-shot, nothing more: ' + await ev.rest());

    await call(c, 'getChildren', '/nzw', ev.watcher());
    await call(other, 'create', '/nzw/b', b('b'));
    p('event: ' + await ev.next('NODE_CHILDREN_CHANGED'));

    await call(c, 'getData', '/nzw/a', ev.watcher());
    await call(c, 'getChildren', '/nzw', ev.watcher());
    await call(other, 'remove', '/nzw/a', -1);
    const two = [await ev.next('NODE_DELETED'), await ev.next('NODE_CHILDREN_CHANGED')];
    p('events of a delete: ' + two.join(', '));

    // the same watcher function on two reads of one path fires once
    const w = ev.watcher();
    await call(c, 'exists', '/nzw/b', w);
    await call(c, 'getData', '/nzw/b', w);
    await call(other, 'setData', '/nzw/b', b('b2'), -1);
    p('one watcher, two reads: ' + await ev.next('NODE_DATA_CHANGED') + '; then ' + await ev.rest());

    // a watch set, then the node changed by the watching client itself
    await call(c, 'getData', '/nzw/b', ev.watcher());
    [st] = await call(c, 'setData', '/nzw/b', b('b3'), -1);
    p('own write: ' + await ev.next('NODE_DATA_CHANGED') + ' version=' + st.version);

    // an ephemeral of a closed session
    const owner = await client();
    await call(owner, 'create', '/nzw/eph', b('e'), CreateMode.EPHEMERAL);
    await call(c, 'exists', '/nzw/eph', ev.watcher());
    await call(c, 'getChildren', '/nzw', ev.watcher());
    owner.close();
    const gone = [await ev.next('NODE_DELETED'), await ev.next('NODE_CHILDREN_CHANGED')];
    p('owner closed: ' + gone.join(', '));
    [st] = await call(c, 'exists', '/nzw/eph');
    p('ephemeral after close: ' + stat(st, c));
}

// ------------------------------------------------------------------ lock

// The lock recipe node applications write with this client: an ephemeral
// sequential node, then an exists watch on the node just before it.
async function acquire(c, dir, events) {
    const [mine] = await call(c, 'create', dir + '/lock-', b(''), CreateMode.EPHEMERAL_SEQUENTIAL);
    const name = mine.slice(dir.length + 1);
    for (;;) {
        const [children] = await call(c, 'getChildren', dir);
        children.sort();
        const i = children.indexOf(name);
        if (i === 0) {
            return mine;
        }
        const gone = new Promise((resolve) => {
            call(c, 'exists', dir + '/' + children[i - 1], () => resolve()).then(([st]) => {
                if (!st) {
                    resolve();
                }
            });
        });
        events.push('waiting');
        await gone;
    }
}

async function lock() {
    const c1 = await client();
    const c2 = await client();
    const c3 = await client();
    await call(c1, 'create', '/nzl', b(''));
    const log = [];
    const held = await acquire(c1, '/nzl', log);
    p('c1 holds: ' + held + ' waited: ' + log.length);
    const w2 = acquire(c2, '/nzl', log);
    p('c2 waiting: ' + await until(() => log.length === 1));
    const w3 = acquire(c3, '/nzl', log);
    p('c3 waiting: ' + await until(() => log.length === 2));
    const [kids] = await call(c1, 'getChildren', '/nzl');
    p('lock nodes: ' + kids.length);
    await call(c1, 'remove', held, -1);
    const held2 = await w2;
    p('c2 holds: ' + held2);
    c2.close();
    const held3 = await w3;
    p('c3 holds after c2 closed: ' + held3);
    await call(c3, 'remove', held3, -1);

    // contention: 3 clients x 5 rounds, never two holders
    let holders = 0;
    let overlaps = 0;
    let rounds = 0;
    await Promise.all([c1, c3, await client()].map(async (c) => {
        for (let i = 0; i < 5; i++) {
            const mine = await acquire(c, '/nzl', []);
            holders += 1;
            if (holders > 1) {
                overlaps += 1;
            }
            await sleep(2);
            holders -= 1;
            rounds += 1;
            await call(c, 'remove', mine, -1);
        }
    }));
    const [left] = await call(c1, 'getChildren', '/nzl');
    p('contention: rounds=' + rounds + ' overlaps=' + overlaps + ' nodes left=' + left.length);
}

const SCENARIOS = { basic, watches, lock };

async function main() {
    const run = SCENARIOS[scenario];
    if (!hosts || !run) {
        process.stderr.write('usage: node zk_scenarios.js HOST:PORT ' + Object.keys(SCENARIOS).join('|') + '\n');
        process.exit(2);
    }
    const watchdog = setTimeout(() => {
        p('TIMEOUT: watchdog fired after 100 s');
        process.exit(3);
    }, 100000);
    let rc = 0;
    try {
        await run();
        p('done');
    } catch (e) {
        p('ERROR ' + (e && e.getName ? e.getName() : '') + ': ' + (e && e.stack ? e.stack : e));
        rc = 1;
    }
    clearTimeout(watchdog);
    for (const c of clients) {
        c.close();
    }
    // close() queues a closeSession; give it a moment on the wire before exiting
    setTimeout(() => process.exit(rc), 200);
}

main();
