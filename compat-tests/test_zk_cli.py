"""ZooKeeper's own command-line clients against the server: zkCli.sh (the
Java client, Debian's zookeeper 3.8.0) and cli_mt (the C client's shell,
zookeeper-bin 3.8.0).

zkCli.sh gets its commands on stdin, one JVM per test where possible
(ZkServer.zkcli); merge=True keeps its stdout and stderr in one stream in
their real order ("Created /x" and every error go to stderr).  The exit code
is the last command's: 0, or 1 after a failed one.  Stat blocks are
normalised by zk_util.norm_cli_stat (zxids -> <zxid>, times -> <time>,
session ids -> <session>; the counters stay exact) and the zxid relations are
checked separately.  Watch events zkCli prints come in `.events`, in order.

Every expected text below was produced by ZooKeeper 3.8.0.  The CLIs format
everything themselves, so what these tests pin on the server side is the
data and stat values, the error codes behind each message, the ACL
semantics, and which watch events fire.  Note that zkCli sorts `ls` output
itself while the C client prints the server's order (ZooKeeper: a HashSet's),
so the C client's children are compared sorted.
"""

from zk_util import cli_stat, norm_cli_stat, parse_cli_stat


def cli(zk, *commands):
    """zkCli with stdout+stderr merged and stats normalised: (rc, text)."""
    r = zk.zkcli(*commands, merge=True)
    return r.rc, norm_cli_stat(r.out)


# --------------------------------------------------------------------------- basics


def test_fresh_server_ls(zk):
    assert cli(zk, "ls /", "ls /zookeeper", "ls -R /") == (0, (
        "[zookeeper]\n"
        "[config, quota]\n"
        "/\n/zookeeper\n/zookeeper/config\n/zookeeper/quota\n"))


def test_fresh_server_root_stat(zk):
    rc, out = cli(zk, "stat /", "stat /zookeeper", "stat /zookeeper/config")
    assert rc == 0
    assert out == (cli_stat(cversion=-1, children=1, system=True)
                   + cli_stat(cversion=-2, children=2, system=True)
                   + cli_stat(aversion=-1, system=True))


def test_create_get_set_delete(zk):
    assert cli(zk, "create /a hello", "get /a", "set /a world", "get /a", "delete /a", "get /a") == (1, (
        "Created /a\n"
        "hello\n"
        "world\n"
        "Node does not exist: /a\n"))


def test_get_of_node_without_data(zk):
    # zkCli sends no data at all for a create without data: get prints "null";
    # empty data ('' -- zkCli strips the quotes) prints an empty line
    assert cli(zk, "create /n", "get /n", "set /n ''", "get /n", "stat /n") == (
        0, "Created /n\nnull\n\n" + cli_stat(version=1, length=0))


def test_get_s_and_stat(zk):
    r = zk.zkcli("create /a data", "get -s /a", "set /a longer", "stat /a", merge=True)
    assert r.rc == 0
    assert norm_cli_stat(r.out) == ("Created /a\n"
                                    "data\n" + cli_stat(length=4)
                                    + cli_stat(version=1, length=6))
    first, second = [parse_cli_stat(b) for b in r.out.split("numChildren = 0\n")[:2]]
    assert first["cZxid"] == first["mZxid"] == first["pZxid"]
    assert second["cZxid"] == first["cZxid"] and second["pZxid"] == first["pZxid"]
    assert second["mZxid"] > first["mZxid"]


def test_set_s_prints_new_stat(zk):
    assert cli(zk, "create /a v0", "set -s /a v1", "set -s /a v22") == (0, (
        "Created /a\n" + cli_stat(version=1, length=2) + cli_stat(version=2, length=3)))


def test_versioned_set_and_delete(zk):
    assert cli(zk, "create /a x", "set -v 0 /a y", "set -v 0 /a z", "get /a",
               "delete -v 0 /a", "delete -v 1 /a", "get /a") == (1, (
        "Created /a\n"
        "version No is not valid : /a\n"
        "y\n"
        "version No is not valid : /a\n"
        "Node does not exist: /a\n"))


def test_error_texts(zk):
    assert cli(zk, "create /a", "create /a", "create /x/y", "get /nope", "set /nope v", "stat /nope",
               "ls /nope", "delete /nope", "create /a/b", "delete /a",
               "create -e /e", "create /e/child", "sync /nope") == (0, (
        "Created /a\n"
        "Node already exists: /a\n"
        "Node does not exist: /x/y\n"
        "Node does not exist: /nope\n"
        "Node does not exist: /nope\n"
        "Node does not exist: /nope\n"
        "Node does not exist: /nope\n"
        "Node does not exist: /nope\n"
        "Created /a/b\n"
        "Node not empty: /a\n"
        "Created /e\n"
        "Ephemerals cannot have children: /e/child\n"
        "Sync is OK\n"))


def test_exit_code_is_last_commands(zk):
    assert zk.zkcli("get /nope").rc == 1
    assert zk.zkcli("get /nope", "ls /").rc == 0
    assert zk.zkcli("create /a", "create /a").rc == 1


def test_created_goes_to_stderr(zk):
    r = zk.zkcli("create /a x", "get /a", "get /nope")
    assert (r.rc, r.out, r.err) == (1, "x\n", "Created /a\nNode does not exist: /nope\n")


def test_protected_nodes(zk):
    assert cli(zk, "delete /zookeeper", "delete /zookeeper/quota", "set /zookeeper/config x",
               "create /zookeeper/mine", "ls /zookeeper") == (0, (
        "Arguments are not valid : /zookeeper\n"
        "Arguments are not valid : /zookeeper/quota\n"
        "Insufficient permission : /zookeeper/config\n"
        "Created /zookeeper/mine\n"
        "[config, mine, quota]\n"))


# --------------------------------------------------------------------------- create modes


def test_create_modes(zk):
    rc, out = cli(zk, "create /p", "create /p/a", "create /p/b",
                  "create -s /p/s", "create -s /p/s data", "create -e /p/e eph",
                  "create -e -s /p/es", "create -c /cont", "create -c /cont/x",
                  "create -t 100000 /ttl tdata", "create -s -t 100000 /p/ttls",
                  "ls /p", "get -s /p/e", "stat /cont", "stat /ttl", "stat /p")
    assert rc == 0
    assert out == (
        "Created /p\nCreated /p/a\nCreated /p/b\n"
        "Created /p/s0000000002\n"
        "Created /p/s0000000003\n"
        "Created /p/e\n"
        "Created /p/es0000000005\n"
        "Created /cont\nCreated /cont/x\n"
        "Created /ttl\n"
        "Created /p/ttls0000000006\n"
        "[a, b, e, es0000000005, s0000000002, s0000000003, ttls0000000006]\n"
        "eph\n" + cli_stat(owner=True, length=3)
        # containers and TTL nodes show no owner
        + cli_stat(cversion=1, children=1)
        + cli_stat(length=5)
        + cli_stat(cversion=7, children=7))


def test_ephemeral_gone_for_next_session(zk):
    # each zkCli run is its own session: its ephemerals end with it
    assert cli(zk, "create -e /e", "create -e -s /es", "ls /") == (
        0, "Created /e\nCreated /es0000000001\n[e, es0000000001, zookeeper]\n")
    assert cli(zk, "ls /", "create -s /s") == (0, "[zookeeper]\nCreated /s0000000002\n")


def test_sequential_counts_creates_not_deletes(zk):
    assert cli(zk, "create /p", "create /p/a", "delete /p/a", "create /p/b", "delete /p/b",
               "create -s /p/n", "stat /p") == (0, (
        "Created /p\nCreated /p/a\nCreated /p/b\n"
        "Created /p/n0000000002\n" + cli_stat(cversion=5, children=1)))


# --------------------------------------------------------------------------- ls, deleteall, counts


def test_ls_variants(zk):
    assert cli(zk, "create /p", "create /p/b", "create /p/a", "create /p/a/x", "create /q",
               "ls /p", "ls -s /p", "ls -R /p", "ls -R /", "ls /p/a/x") == (0, (
        "Created /p\nCreated /p/b\nCreated /p/a\nCreated /p/a/x\nCreated /q\n"
        "[a, b]\n"
        "[a, b]\n" + cli_stat(cversion=2, children=2)
        + "/p\n/p/a\n/p/b\n/p/a/x\n"
        # ls -R: each node's sorted children first, then their subtrees
        "/\n/p\n/q\n/zookeeper\n/p/a\n/p/b\n/p/a/x\n/zookeeper/config\n/zookeeper/quota\n"
        "[]\n"))


def test_deleteall(zk):
    assert cli(zk, "create /t", "create /t/a", "create /t/a/1", "create /t/a/2", "create /t/b",
               "deleteall /t", "ls /", "create /u", "create /u/x", "deleteall /u -b 1", "ls /",
               "deleteall /nope") == (1, (
        "Created /t\nCreated /t/a\nCreated /t/a/1\nCreated /t/a/2\nCreated /t/b\n"
        "[zookeeper]\n"
        "Created /u\nCreated /u/x\n"
        "[zookeeper]\n"
        "Node does not exist: /nope\n"))


def test_get_all_children_number_and_ephemerals(zk):
    assert cli(zk, "getAllChildrenNumber /", "create /t", "create /t/a", "create /t/a/b",
               "getAllChildrenNumber /t", "getAllChildrenNumber /", "getAllChildrenNumber /nope",
               "getEphemerals /", "create -e /t/e", "getEphemerals /", "getEphemerals /t",
               "getEphemerals /x") == (0, (
        "3\n"
        "Created /t\nCreated /t/a\nCreated /t/a/b\n"
        "2\n6\n"
        "Node does not exist: /nope\n"
        "[]\n"
        "Created /t/e\n"
        "[/t/e]\n[/t/e]\n[]\n"))


def test_config_and_sync(zk):
    # standalone: /zookeeper/config holds no data (printed as an empty line)
    assert cli(zk, "config", "config -s", "sync /", "sync /zookeeper") == (0, (
        "\n"
        "\n" + cli_stat(aversion=-1, system=True)
        + "Sync is OK\nSync is OK\n"))


def test_quota(zk):
    # setquota writes .../zookeeper_limits itself; the server keeps
    # .../zookeeper_stats (count includes the node itself) up to date
    assert cli(zk, "create /q", "setquota -n 2 /q", "create /q/a abc", "create /q/b", "create /q/c 12",
               "listquota /q", "ls -R /zookeeper/quota", "get /zookeeper/quota/q/zookeeper_stats",
               "delete /q/c", "set /q/a abcdef", "get /zookeeper/quota/q/zookeeper_stats",
               "delquota /q", "listquota /q") == (0, (
        "Created /q\n"
        "Created /q/a\nCreated /q/b\nCreated /q/c\n"
        "absolute path is /zookeeper/quota/q/zookeeper_limits\n"
        "Output quota for /q count=2,bytes=-1=;byteHardLimit=-1;countHardLimit=-1\n"
        "Output stat for /q count=4,bytes=5\n"
        "/zookeeper/quota\n/zookeeper/quota/q\n"
        "/zookeeper/quota/q/zookeeper_limits\n/zookeeper/quota/q/zookeeper_stats\n"
        "count=4,bytes=5\n"
        "count=3,bytes=6\n"
        "absolute path is /zookeeper/quota/q/zookeeper_limits\n"
        "quota for /q does not exist.\n"))


# --------------------------------------------------------------------------- ACLs


def test_get_and_set_acl(zk):
    assert cli(zk, "create /a", "getAcl /a", "setAcl /a world:anyone:rwa", "getAcl -s /a",
               "setAcl -v 0 /a world:anyone:r", "setAcl -s -v 1 /a world:anyone:r",
               "getAcl /a", "setAcl /a world:anyone:cdrwa") == (1, (
        "Created /a\n"
        "'world,'anyone\n: cdrwa\n"
        "'world,'anyone\n: rwa\n" + cli_stat(aversion=1)
        + "version No is not valid : /a\n"
        + cli_stat(aversion=2)
        + "'world,'anyone\n: r\n"
        # setAcl needs ADMIN, which the ACL no longer grants
        "Insufficient permission : /a\n"))


def test_acl_enforcement(zk):
    assert cli(zk, "create /ro x world:anyone:r", "get /ro", "set /ro y", "create /ro/c",
               "getAcl /ro", "setAcl /ro world:anyone:cdrwa",
               "create /nd x world:anyone:rc", "create /nd/c", "delete /nd/c",
               "create /na x world:anyone:w", "get /na", "getAcl /na", "ls /na", "stat /na") == (0, (
        "Created /ro\n"
        "x\n"
        "Insufficient permission : /ro\n"
        # CREATE is checked on the parent, but the message names the new path
        "Insufficient permission : /ro/c\n"
        "'world,'anyone\n: r\n"
        "Insufficient permission : /ro\n"
        "Created /nd\nCreated /nd/c\n"
        "Insufficient permission : /nd/c\n"
        "Created /na\n"
        "Insufficient permission : /na\n"
        "Insufficient permission : /na\n"
        "Insufficient permission : /na\n"
        # stat (exists) needs no permission
        + cli_stat(length=1)))


def test_digest_acl_and_addauth(zk):
    # digest of "u:p" = base64(sha1("u:p"))
    digest = "u:Jq7wMyA/w2Vd5WIDAKdu4OIIFEQ="
    assert cli(zk, f"create /d secret digest:{digest}:cdrwa", "get /d", "getAcl /d",
               "addauth digest u:wrong", "get /d", "addauth digest u:p", "get /d", "getAcl /d") == (0, (
        "Created /d\n"
        "Insufficient permission : /d\n"
        "Insufficient permission : /d\n"
        "Insufficient permission : /d\n"
        "secret\n"
        f"'digest,'{digest}\n: cdrwa\n"))
    # a new session has none of the earlier one's auth
    assert cli(zk, "get /d") == (1, "Insufficient permission : /d\n")


def test_digest_hash_hidden_without_admin(zk):
    digest = "u:Jq7wMyA/w2Vd5WIDAKdu4OIIFEQ="
    assert cli(zk, f"create /r x digest:{digest}:r,world:anyone:r", "getAcl /r",
               "addauth digest u:p", "getAcl /r") == (0, (
        "Created /r\n"
        "'digest,'u:x\n: r\n'world,'anyone\n: r\n"
        "'digest,'u:x\n: r\n'world,'anyone\n: r\n"))


def test_auth_and_ip_acl_schemes(zk):
    assert cli(zk, "create /x data auth::cdrwa", "addauth digest bob:pw", "create /y data auth::cdrwa",
               "getAcl /y", "create /ip data ip:127.0.0.1:cdrwa,world:anyone:r", "getAcl /ip", "get /ip",
               "create /far data ip:10.0.0.1:cdrwa", "get /far") == (1, (
        "KeeperErrorCode = InvalidACL for /x\n"
        "Acl is not valid : /x\n"
        "Created /y\n"
        "'digest,'bob:ikIaKsbtGweaHnb/jKn7OHqbunM=\n: cdrwa\n"
        "Created /ip\n"
        "'ip,'127.0.0.1\n: cdrwa\n'world,'anyone\n: r\n"
        "data\n"
        "Created /far\n"
        "Insufficient permission : /far\n"))


def test_set_acl_recursive(zk):
    assert cli(zk, "create /p", "create /p/a", "create /p/a/b", "setAcl -R /p world:anyone:r",
               "getAcl /p/a/b", "create /p/c") == (1, (
        "Created /p\nCreated /p/a\nCreated /p/a/b\n"
        "'world,'anyone\n: r\n"
        "Insufficient permission : /p/c\n"))


def test_whoami(zk):
    assert cli(zk, "whoami", "addauth digest alice:pw", "whoami") == (0, (
        "Auth scheme: User\n"
        "ip: 127.0.0.1\n"
        "Auth scheme: User\n"
        "ip: 127.0.0.1\n"
        "digest: alice\n"))


# --------------------------------------------------------------------------- watches


def test_one_shot_watches(zk):
    r = zk.zkcli("create /w x", "get -w /w", "set /w y", "set /w z",
                 "ls -w /", "create /c", "create /d",
                 "stat -w /missing", "create /missing",
                 "get /w", "ls /", merge=True)
    assert (r.rc, r.out) == (0, (
        "Created /w\n"
        "x\n"
        "[w, zookeeper]\n"
        "Created /c\nCreated /d\n"
        "Node does not exist: /missing\n"
        "Created /missing\n"
        "z\n"
        "[c, d, missing, w, zookeeper]\n"))
    assert r.events == [
        "WatchedEvent state:SyncConnected type:NodeDataChanged path:/w",
        "WatchedEvent state:SyncConnected type:NodeChildrenChanged path:/",
        "WatchedEvent state:SyncConnected type:NodeCreated path:/missing",
    ]


def test_persistent_watches(zk):
    r = zk.zkcli("addWatch /r", "create /r", "create /r/a", "set /r/a 1", "delete /r/a",
                 "addWatch -m PERSISTENT /p", "create /p", "create /p/q", "create /p/q/deep", "set /p z",
                 "ls /", "ls /", merge=True)
    assert r.rc == 0
    assert r.events == [
        # PERSISTENT_RECURSIVE (the default): the whole subtree, no child events
        "WatchedEvent state:SyncConnected type:NodeCreated path:/r",
        "WatchedEvent state:SyncConnected type:NodeCreated path:/r/a",
        "WatchedEvent state:SyncConnected type:NodeDataChanged path:/r/a",
        "WatchedEvent state:SyncConnected type:NodeDeleted path:/r/a",
        # PERSISTENT: the node's data and children, not grandchildren
        "WatchedEvent state:SyncConnected type:NodeCreated path:/p",
        "WatchedEvent state:SyncConnected type:NodeChildrenChanged path:/p",
        "WatchedEvent state:SyncConnected type:NodeDataChanged path:/p",
    ]


def test_remove_watches(zk):
    r = zk.zkcli("create /w x", "get -w /w", "removewatches /w", "removewatches /w",
                 "set /w y", "ls -w /", "removewatches / -c", "create /n", "ls /", merge=True)
    assert (r.rc, r.out) == (0, (
        "Created /w\n"
        "x\n"
        "KeeperErrorCode = No such watcher for /w\n"
        "[w, zookeeper]\n"
        "Created /n\n"
        "[n, w, zookeeper]\n"))
    # the removals are reported to the watchers locally; nothing fires afterwards
    assert r.events == [
        "WatchedEvent state:SyncConnected type:DataWatchRemoved path:/w",
        "WatchedEvent state:SyncConnected type:ChildWatchRemoved path:/",
    ]


# --------------------------------------------------------------------------- the C client (cli_mt)


def test_c_client_cli_mt(zk):
    mt = zk.cli_mt
    assert mt("create /cm") == (0, "", "Creating [/cm] node (mode: 0)\n[/cm]: rc = 0\n\tname = /cm\n")
    assert mt("create /cm").err == "Creating [/cm] node (mode: 0)\n[/cm]: rc = -110\n"
    # the C shell always creates with the data "new"
    assert mt("get /cm").err == (
        "/cm: rc = 0\n value_len = 3\nnew\nStat:\n"
        "\tctime = <time>\n\tczxid=<zxid>\n\tmtime=<time>\n\tmzxid=<zxid>\n"
        "\tversion=0\taversion=0\n\tephemeralOwner = 0\n")
    assert mt("set /cm hello").err == (
        "/cm: rc = 0 Stat:\n"
        "\tctime = <time>\n\tczxid=<zxid>\n\tmtime=<time>\n\tmzxid=<zxid>\n"
        "\tversion=1\taversion=0\n\tephemeralOwner = 0\n")
    assert mt("get /cm").err.split("\n")[:3] == ["/cm: rc = 0", " value_len = 5", "hello"]
    assert mt("create +s /cm/s-").err == (
        "Creating [/cm/s-] node (mode: 2)\n[/cm/s-]: rc = 0\n\tname = /cm/s-0000000000\n")
    assert mt("create +e /cm/e").err == "Creating [/cm/e] node (mode: 1)\n[/cm/e]: rc = 0\n\tname = /cm/e\n"
    # its session ended with the command: the ephemeral is gone
    out = mt("ls /cm").err
    assert out.startswith("/cm: rc = 0\n")
    assert sorted(out.split("\n")[1:]) == ["", "\ts-0000000000"]
    assert mt("create2 /cm2").err == (
        "Creating [/cm2] node (mode: 0)\n[/cm2]: rc = 0\n\tname = /cm2\n"
        "\tctime = <time>\n\tczxid=<zxid>\n\tmtime=<time>\n\tmzxid=<zxid>\n"
        "\tversion=0\taversion=0\n\tephemeralOwner = 0\n")
    assert mt("delete /cm").err == "/cm: rc = -111\n"
    assert mt("delete /cm/s-0000000000").err == "/cm/s-0000000000: rc = 0\n"
    assert mt("delete /cm").err == "/cm: rc = 0\n"
    assert mt("delete /cm").err == "/cm: rc = -101\n"
    assert mt("get /cm").err == "/cm: rc = -101\n\nStat:\nnull\n"
    assert mt("ls2 /cm").err == "/cm: rc = -101\nnull\n"
    assert mt("sync /").err == "[/]: rc = 0\n\tname = /\n"
    assert mt("config").err == (
        "/zookeeper/config: rc = 0\n value_len = 0\n\nStat:\n"
        "\tctime = Thu Jan  1 00:00:00 1970\n\tczxid=0\n\tmtime=Thu Jan  1 00:00:00 1970\n\tmzxid=0\n"
        "\tversion=0\taversion=ffffffff\n\tephemeralOwner = 0\n")


# --------------------------------------------------------------------------- one-command mode


def test_one_command_mode_as_scripts_use_it(zk):
    # `zkCli.sh -server HOST:PORT CMD ARGS`: one command, its exit code (0, 1 after a
    # KeeperException); the JVM exits without closing its session, so an ephemeral it
    # made lives on until that session times out
    def run(*args):
        r = zk.zkcli_command(*args)
        return r.rc, norm_cli_stat(r.out)

    assert run("create", "/s", "v1") == (0, "Created /s\n")
    assert run("get", "-s", "/s") == (0, "v1\n" + cli_stat(length=2))
    assert run("get", "/missing") == (1, "Node does not exist: /missing\n")
    assert run("create", "/s", "again") == (1, "Node already exists: /s\n")
    assert run("delete", "/s") == (0, "")
    assert run("create", "-e", "/e", "gone") == (0, "Created /e\n")
    assert run("ls", "/") == (0, "[e, zookeeper]\n")
