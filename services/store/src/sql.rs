//! Every statement the store runs per request, in one place: the store prepares these, and
//! the bench tool issues the very same text directly to PostgreSQL as its ceiling. (Start-up
//! work, creating the database and migrating it, lives in `db` and `migrate`.)

use std::sync::LazyLock;

/// Columns every message query selects; `rows::message` reads them by name.
/// (`recipient` is not among them: it follows from the conversation and the sender.)
pub const MESSAGE_COLUMNS: &str = "m.msg_id, m.seq, m.sender, m.msg_type, \
     m.body, m.attributes, m.server_time_ms, m.client_msg_id, m.edit_version, m.edited_at_ms";

/// Access check and watermarks of `$2` in conversation `$1`.
pub const VIEW: &str = "SELECT c.purged_through_seq, uc.hidden_through_seq, uc.is_member, \
     c.last_seq \
     FROM conversations c LEFT JOIN user_conversations uc \
       ON uc.conv_key = c.conv_key AND uc.user_id = $2 \
     WHERE c.conv_key = $1";

/// The exclusive seq bounds of a page: `{lo} < seq < {hi}`, narrowed by the optional time
/// range `$4..=$5`. `server_time_ms` never decreases along seq within a conversation, so a time
/// range is a seq range, found by one probe of `messages_by_time` per bound: a page costs the
/// same however far back in time it reaches.
fn lower(lo: &str) -> String {
    format!(
        "(CASE WHEN $4::bigint IS NULL THEN {lo} ELSE greatest({lo}, coalesce(
        (SELECT b.seq - 1 FROM messages b WHERE b.conv_key = $1 AND b.server_time_ms >= $4
         ORDER BY b.server_time_ms, b.seq LIMIT 1), 9223372036854775807)) END)"
    )
}

fn upper(hi: &str) -> String {
    format!(
        "(CASE WHEN $5::bigint IS NULL THEN {hi} ELSE least({hi}, coalesce(
        (SELECT b.seq + 1 FROM messages b WHERE b.conv_key = $1 AND b.server_time_ms <= $5
         ORDER BY b.server_time_ms DESC, b.seq DESC LIMIT 1), 0)) END)"
    )
}

/// Not removed one-way by reader `$8`. Most readers have removed nothing above their floor:
/// the view says so once per page (`v.removed_any`, one probe of the tombstones' key), and
/// then no row is probed at all; otherwise each row is one index lookup (`OFFSET 0` fences the
/// probe so it stays that). `t.conv_key = $1` (not `= m.conv_key`) keeps it on the
/// conversation's own shard when the tables are distributed.
const NOT_REMOVED: &str = "(NOT v.removed_any OR NOT EXISTS (SELECT 1 FROM tombstones t
         WHERE t.conv_key = $1 AND t.user_id = $8 AND t.seq = m.seq OFFSET 0))";

/// Which messages a page may draw from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageFilter {
    /// Every message (no `senders`, no `types`).
    All,
    /// Only kinds `$7` (no `senders`).
    Kinds,
    /// Only senders `$6` of kinds `$7` (the store passes every kind when `types` is empty).
    SendersAndKinds,
}

/// The messages of one page between `{lo}` and `{hi}` (exclusive), in `{order}`, read only
/// when `{gate}` holds. The gate sits in the innermost `LIMIT`ed query, which PostgreSQL never
/// flattens into the statement around it: there, with only outer columns in it, it is a
/// one-time filter checked before any index is read (one level up it would be a join filter
/// applied to rows already read).
fn page_rows(order: &str, filter: PageFilter, lo: &str, hi: &str, gate: &str) -> String {
    let (lower, upper) = (lower(lo), upper(hi));
    match filter {
        PageFilter::All => format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m
             WHERE {gate} AND m.conv_key = $1 AND m.seq > {lower} AND m.seq < {upper}
               AND NOT m.recalled AND {NOT_REMOVED}
             ORDER BY m.seq {order} LIMIT $9"
        ),
        // A filtered page merges one ordered index range per filter value (kind, or
        // (sender, kind) pair), each cut at the page's limit: index work proportional to the
        // page times the number of values, never to the conversation, however rare the
        // filtered messages are. Only seqs are read from the indexes; rows are fetched for
        // the page alone.
        PageFilter::Kinds => merged(
            order,
            "unnest($7::smallint[]) AS k(kind)",
            "m.msg_type = k.kind",
            &lower,
            &upper,
            gate,
        ),
        PageFilter::SendersAndKinds => merged(
            order,
            "unnest($6::text[]) AS s(sender) CROSS JOIN unnest($7::smallint[]) AS k(kind)",
            "m.sender = s.sender AND m.msg_type = k.kind",
            &lower,
            &upper,
            gate,
        ),
    }
}

/// A filtered page: for each filter value (a row of `{values}`, matched by `{matches}`) an
/// ordered index range cut at the page's limit, merged and cut again (see [`page_rows`]).
fn merged(
    order: &str,
    values: &str,
    matches: &str,
    lower: &str,
    upper: &str,
    gate: &str,
) -> String {
    format!(
        "SELECT {MESSAGE_COLUMNS} FROM (
             SELECT f.seq FROM {values}
             CROSS JOIN LATERAL (
                 SELECT m.seq FROM messages m
                 WHERE {gate} AND m.conv_key = $1 AND {matches}
                   AND m.seq > {lower} AND m.seq < {upper} AND NOT m.recalled
                   AND {NOT_REMOVED}
                 ORDER BY m.seq {order} LIMIT $9) f
             ORDER BY f.seq {order} LIMIT $9) p
         JOIN messages m ON m.conv_key = $1 AND m.seq = p.seq
         ORDER BY m.seq {order}"
    )
}

/// A history page in one statement (one round trip): the reader's view, the start, the page.
///
/// Parameters: conversation `$1`; the page starts after seq `$2`, or, when `$3` is set, after
/// message `$3` (FetchHistory's anchor); optional time range `$4..=$5`; senders `$6` and kinds
/// `$7` (used by the filtered shapes only); reader `$8`; limit `$9`; `$10` says it is a GROUP /
/// CHATROOM (membership required).
///
/// Answers one row per message, each with the view's columns beside it (`purged_through_seq`,
/// `hidden_through_seq`, `is_member`, `last_seq`: `history::view_of` reads its verdict from
/// them) and `page_after`, the seq the page starts after (NULL: the anchor is not in the
/// conversation); an empty page is one row whose message columns are NULL; no row: no such
/// conversation. The page is read only when the reader may see it (see [`page_rows`]'s gate),
/// so a refused call reads no message. Which rule refused is decided in Rust, from the
/// columns.
fn page(order: &str, filter: PageFilter) -> String {
    let (lo, hi) = match order {
        "ASC" => ("greatest(v.page_after, v.floor)", "9223372036854775807"),
        _ => ("v.floor", "v.page_after"),
    };
    let gate = "v.page_after IS NOT NULL AND (v.is_member IS TRUE OR NOT $10::bool)";
    let rows = page_rows(order, filter, lo, hi, gate);
    // MATERIALIZED: the page reads `v`'s columns as parameters, so the gate is a one-time
    // filter evaluated before any message is read, and the anchor is looked up once.
    format!(
        "WITH v AS MATERIALIZED (
             SELECT c.purged_through_seq, uc.hidden_through_seq, uc.is_member, c.last_seq,
                    greatest(coalesce(uc.hidden_through_seq, 0), c.purged_through_seq) AS floor,
                    CASE WHEN $3::bigint IS NULL THEN $2::bigint
                         ELSE (SELECT a.seq FROM messages a
                               WHERE a.conv_key = $1 AND a.msg_id = $3::bigint) END AS page_after,
                    EXISTS (SELECT 1 FROM tombstones t
                            WHERE t.conv_key = $1 AND t.user_id = $8
                              AND t.seq > greatest(coalesce(uc.hidden_through_seq, 0),
                                                   c.purged_through_seq)) AS removed_any
             FROM conversations c LEFT JOIN user_conversations uc
               ON uc.conv_key = $1 AND uc.user_id = $8
             WHERE c.conv_key = $1)
         SELECT v.purged_through_seq, v.hidden_through_seq, v.is_member, v.last_seq,
                v.page_after, p.*
         FROM v LEFT JOIN LATERAL ({rows}) p ON true
         ORDER BY p.seq {order}"
    )
}

/// A history page, oldest first (see [`page`] for the parameters and the answer).
pub static PAGE_FORWARD: LazyLock<String> = LazyLock::new(|| page("ASC", PageFilter::All));
/// A history page, newest first.
pub static PAGE_BACKWARD: LazyLock<String> = LazyLock::new(|| page("DESC", PageFilter::All));
/// A page of kinds `$7`, oldest first.
pub static PAGE_FORWARD_KINDS: LazyLock<String> = LazyLock::new(|| page("ASC", PageFilter::Kinds));
/// A page of kinds `$7`, newest first.
pub static PAGE_BACKWARD_KINDS: LazyLock<String> =
    LazyLock::new(|| page("DESC", PageFilter::Kinds));
/// A page of senders `$6` and kinds `$7`, oldest first.
pub static PAGE_FORWARD_SENDERS: LazyLock<String> =
    LazyLock::new(|| page("ASC", PageFilter::SendersAndKinds));
/// A page of senders `$6` and kinds `$7`, newest first.
pub static PAGE_BACKWARD_SENDERS: LazyLock<String> =
    LazyLock::new(|| page("DESC", PageFilter::SendersAndKinds));

/// The parameter types of every page statement (typed, since not every shape uses `$6`/`$7`).
pub const PAGE_PARAMETERS: [tokio_postgres::types::Type; 10] = {
    use tokio_postgres::types::Type;
    [
        Type::TEXT,
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::TEXT_ARRAY,
        Type::INT2_ARRAY,
        Type::TEXT,
        Type::INT8,
        Type::BOOL,
    ]
};

/// The page statement for `direction_backward` and `filter`.
pub fn page_statement(backward: bool, filter: PageFilter) -> &'static str {
    match (backward, filter) {
        (false, PageFilter::All) => &PAGE_FORWARD,
        (true, PageFilter::All) => &PAGE_BACKWARD,
        (false, PageFilter::Kinds) => &PAGE_FORWARD_KINDS,
        (true, PageFilter::Kinds) => &PAGE_BACKWARD_KINDS,
        (false, PageFilter::SendersAndKinds) => &PAGE_FORWARD_SENDERS,
        (true, PageFilter::SendersAndKinds) => &PAGE_BACKWARD_SENDERS,
    }
}

/// Where a list or feed statement finds the caller's conversation row: the columns of the
/// fenced subquery `s` ([`Layout::Single`]'s shapes), or the tables' own columns
/// ([`Layout::Citus`]'s flat shapes, where `uc` and `c` are joined directly).
struct Entry {
    key: &'static str,
    user: &'static str,
    kind: &'static str,
    last_seq: &'static str,
    read_seq: &'static str,
    floor: &'static str,
    pinned_at_ms: &'static str,
    marks: &'static str,
    /// What ends the per-row tombstone probe: `OFFSET 0` keeps PostgreSQL from turning it
    /// into a join of the fenced shape; Citus pushes the flat shape's probe down as it is.
    probe_fence: &'static str,
}

/// The entry as the fenced subquery `s` exposes it ([`ENTRY_COLUMNS`]).
const FENCED: Entry = Entry {
    key: "s.conv_key",
    user: "s.user_id",
    kind: "s.kind",
    last_seq: "s.last_seq",
    read_seq: "s.read_seq",
    floor: "s.floor",
    pinned_at_ms: "s.pinned_at_ms",
    marks: "s.marks",
    probe_fence: "OFFSET 0",
};

/// The entry as the joined tables have it (`uc`, `c`).
const FLAT: Entry = Entry {
    key: "uc.conv_key",
    user: "uc.user_id",
    kind: "c.kind",
    last_seq: "c.last_seq",
    read_seq: "uc.read_seq",
    floor: "greatest(uc.hidden_through_seq, c.purged_through_seq)",
    pinned_at_ms: "uc.pinned_at_ms",
    marks: "uc.marks",
    probe_fence: "",
};

/// The caller's read state of conversation row `e`, with the unread count saturating at
/// `{cap}`: the seqs above the read marker (and the floor) minus the caller's removals by id
/// above it. No message is counted one by one: the seqs are gapless, one's own messages are
/// never above one's own marker (sending moves it), and removals by id are sparse (see
/// docs/schema.md, "Read state").
fn read_state(e: &Entry, cap: &str) -> String {
    let unread = unread(e.key, e.user, e.read_seq, e.floor, e.last_seq, cap);
    let Entry {
        key,
        user,
        kind,
        read_seq,
        pinned_at_ms,
        marks,
        ..
    } = e;
    format!(
        "{read_seq} AS read_seq, {unread} AS unread_count,
         CASE WHEN {kind} = 1 THEN coalesce(
             (SELECT o.read_seq FROM user_conversations o
              WHERE o.conv_key = {key} AND o.user_id <> {user} LIMIT 1), {read_seq})
              ELSE 0 END AS peer_read_seq,
         {pinned_at_ms} AS pinned_at_ms, {marks} AS marks"
    )
}

/// The unread count of user `{user}` in conversation `{key}` with read marker `{marker}` and
/// floor `{floor}` up to last seq `{last}`, saturating at `{cap}`: the seqs above the marker
/// minus the user's removals and the recalls above it (docs/schema.md, "Read state"). The one
/// rule the list, the feed and MarkRead share.
fn unread(key: &str, user: &str, marker: &str, floor: &str, last: &str, cap: &str) -> String {
    format!(
        "least({cap}, greatest(0::bigint, {last} - greatest({marker}, {floor})
             - (SELECT count(*) FROM tombstones t
                WHERE t.conv_key = {key} AND t.user_id = {user}
                  AND t.seq > greatest({marker}, {floor}))
             - (SELECT count(*) FROM messages x
                WHERE x.conv_key = {key} AND x.recalled AND x.seq > greatest({marker}, {floor})
                  AND NOT EXISTS (SELECT 1 FROM tombstones t WHERE t.conv_key = {key}
                                  AND t.user_id = {user} AND t.seq = x.seq))))"
    )
}

/// The columns of a caller's conversation row that the list and the feed read.
const ENTRY_COLUMNS: &str = "c.conv_key, c.kind, c.last_time_ms, c.last_seq, uc.user_id,
     uc.is_member, uc.read_seq, uc.pinned_at_ms, uc.marks,
     greatest(uc.hidden_through_seq, c.purged_through_seq) AS floor";

/// Which shape of the multi-row statements (the list, the feed) the database needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// One PostgreSQL: `OFFSET 0` fences make the planner sort the caller's candidates first
    /// and look up messages only for the rows the LIMIT reaches.
    #[default]
    Single,
    /// A Citus cluster, the tables distributed on `conv_key` (see [`crate::citus`]): the
    /// caller's rows are spread over every shard, and Citus pushes a statement down to each
    /// shard whole only when its joins and correlated subqueries reach the tables directly
    /// (a lateral `LIMIT` over a fenced subquery is refused). The flat shapes join `uc`, `c`
    /// and the lateral lookups directly; each shard answers its best rows, the coordinator
    /// merges them and applies the LIMIT again.
    Citus,
}

fn list(layout: Layout, order: &str, keyset: &str, window: &str) -> String {
    list_in(layout, order, keyset, window, |e| read_state(e, "$8"))
}

/// A list statement for `layout` whose read-state columns `read_state` writes.
fn list_in(
    layout: Layout,
    order: &str,
    keyset: &str,
    window: &str,
    read_state: fn(&Entry) -> String,
) -> String {
    match layout {
        Layout::Single => list_with(order, keyset, window, &read_state(&FENCED)),
        Layout::Citus => list_flat(order, keyset, window, &read_state(&FLAT)),
    }
}

/// The newest message of entry `e`'s conversation its user may see (above the floor, not
/// recalled, not removed one way), looked up only when `gate` holds: the lateral lookup of
/// the list and the feed, walking the primary key backwards.
fn newest_visible(e: &Entry, gate: &str) -> String {
    let Entry {
        key,
        user,
        floor,
        probe_fence,
        ..
    } = e;
    format!(
        "SELECT * FROM messages m
         WHERE {gate} AND m.conv_key = {key} AND m.seq > {floor} AND NOT m.recalled
           AND NOT EXISTS (SELECT 1 FROM tombstones t
               WHERE t.conv_key = {key} AND t.user_id = {user} AND t.seq = m.seq {probe_fence})
         ORDER BY m.seq DESC LIMIT 1"
    )
}

/// The caller's (`$1`) rows `uc` of kinds `$2` that a list page may show: listable, in
/// `{window}`, with mark `$7` when one is asked for, after the keyset.
fn list_candidates(window: &str, keyset: &str) -> String {
    format!(
        "uc.user_id = $1 AND uc.kind = ANY($2) AND {LISTABLE}
           {window}
           AND ($7::text = '' OR $7::text = ANY(uc.marks))
           AND {keyset}"
    )
}

/// [`list_with`]'s rows in [`Layout::Citus`]'s flat shape (the same columns, the same rules).
fn list_flat(order: &str, keyset: &str, window: &str, read_state: &str) -> String {
    let (candidates, newest) = (
        list_candidates(window, keyset),
        newest_visible(&FLAT, "true"),
    );
    format!(
        "SELECT c.conv_key, c.kind, c.last_time_ms, {read_state}, {MESSAGE_COLUMNS}
         FROM user_conversations uc
         JOIN conversations c ON c.conv_key = uc.conv_key
         CROSS JOIN LATERAL ({newest}) m
         WHERE {candidates}
         ORDER BY {order}
         LIMIT $6"
    )
}

fn list_with(order: &str, keyset: &str, window: &str, read_state: &str) -> String {
    let (candidates, newest) = (
        list_candidates(window, keyset),
        newest_visible(&FENCED, "true"),
    );
    format!(
        "SELECT s.conv_key, s.kind, s.last_time_ms, {read_state}, {MESSAGE_COLUMNS}
         FROM (
             SELECT {ENTRY_COLUMNS}
             FROM user_conversations uc
             CROSS JOIN LATERAL (SELECT * FROM conversations c
                                 WHERE c.conv_key = uc.conv_key OFFSET 0) c
             WHERE {candidates}
             ORDER BY {order}
             OFFSET 0) s
         CROSS JOIN LATERAL ({newest}) m
         ORDER BY {order}
         LIMIT $6"
    )
}

/// A conversation-list page of user `$1`: kinds `$2`, active since `$3`, keyset after
/// `($4, $5)`, limit `$6`, only mark `$7` ('' for any), unread counts saturating at `$8`.
///
/// Shape (measured in services/bench/docs/results.md): first the caller's candidates,
/// sorted by the keyset (`OFFSET 0` fences keep the planner from looking up every candidate's
/// newest message before sorting, or from scanning all conversations); then, only for rows
/// the LIMIT reaches, the newest visible message and the read state, walking the primary key
/// backwards. The tombstone probe is fenced too, so it is an index probe per row.
pub static LIST: LazyLock<String> =
    LazyLock::new(|| list(Layout::Single, LIST_ORDER, LIST_KEYSET, LIST_WINDOW));

/// [`LIST`] on a Citus cluster ([`Layout::Citus`]).
pub static LIST_CITUS: LazyLock<String> =
    LazyLock::new(|| list(Layout::Citus, LIST_ORDER, LIST_KEYSET, LIST_WINDOW));

/// The activity list's order, keyset and window (of [`LIST`]).
const LIST_ORDER: &str = "last_time_ms DESC, conv_key DESC";
const LIST_KEYSET: &str = "(c.last_time_ms, c.conv_key) < ($4, $5)";
const LIST_WINDOW: &str = "AND c.last_time_ms >= $3";

/// [`LIST`] without the unread count and the receipt (both read as 0; `$8` unused): not a
/// statement the service runs, the bench's reference for what the read state adds to a list
/// page (services/bench/docs/results.md).
pub static LIST_WITHOUT_READ_STATE: LazyLock<String> =
    LazyLock::new(|| without_read_state(Layout::Single));

/// [`LIST_WITHOUT_READ_STATE`] on a Citus cluster.
pub static LIST_WITHOUT_READ_STATE_CITUS: LazyLock<String> =
    LazyLock::new(|| without_read_state(Layout::Citus));

fn without_read_state(layout: Layout) -> String {
    list_in(layout, LIST_ORDER, LIST_KEYSET, LIST_WINDOW, |e| {
        format!(
            "{} AS read_seq, least($8::bigint, 0) AS unread_count, 0::bigint AS peer_read_seq,
             {} AS pinned_at_ms, {} AS marks",
            e.read_seq, e.pinned_at_ms, e.marks
        )
    })
}

/// The bench's list references for `layout`: [`LIST`] with the read state, or
/// [`LIST_WITHOUT_READ_STATE`].
pub fn list_reference(layout: Layout, with_read_state: bool) -> &'static str {
    match (layout, with_read_state) {
        (_, true) => list_statement(layout, false),
        (Layout::Single, false) => &LIST_WITHOUT_READ_STATE,
        (Layout::Citus, false) => &LIST_WITHOUT_READ_STATE_CITUS,
    }
}

/// The pinned conversations of user `$1`, most recently pinned first, keyset after
/// `(pinned_at_ms, conv_key)` = `($4, $5)`; the other parameters as [`LIST`] (`$3`, the
/// window, is not used: a pin holds whatever the activity).
pub static LIST_PINNED: LazyLock<String> = LazyLock::new(|| pinned(Layout::Single));

/// [`LIST_PINNED`] on a Citus cluster ([`Layout::Citus`]).
pub static LIST_PINNED_CITUS: LazyLock<String> = LazyLock::new(|| pinned(Layout::Citus));

fn pinned(layout: Layout) -> String {
    list(
        layout,
        "pinned_at_ms DESC, conv_key DESC",
        "uc.pinned_at_ms IS NOT NULL AND (uc.pinned_at_ms, c.conv_key) < ($4, $5)",
        "AND $3::bigint IS NOT NULL",
    )
}

/// The list statement for `layout`, of the pinned conversations when `pinned_only`.
pub fn list_statement(layout: Layout, pinned_only: bool) -> &'static str {
    match (layout, pinned_only) {
        (Layout::Single, false) => &LIST,
        (Layout::Single, true) => &LIST_PINNED,
        (Layout::Citus, false) => &LIST_CITUS,
        (Layout::Citus, true) => &LIST_PINNED_CITUS,
    }
}

/// The parameter types of [`LIST`] and [`LIST_PINNED`].
pub const LIST_PARAMETERS: [tokio_postgres::types::Type; 8] = {
    use tokio_postgres::types::Type;
    [
        Type::TEXT,
        Type::INT2_ARRAY,
        Type::INT8,
        Type::INT8,
        Type::TEXT,
        Type::INT8,
        Type::TEXT,
        Type::INT8,
    ]
};

/// Append: which of senders `$2` are members of conversation `$1`.
pub const MEMBERS: &str = "SELECT user_id FROM user_conversations \
     WHERE conv_key = $1 AND user_id = ANY($2) AND is_member";

/// Append: lock conversation `$1`'s row, reading its last seq and time.
pub const LOCK: &str =
    "SELECT last_seq, last_time_ms FROM conversations WHERE conv_key = $1 FOR UPDATE";

/// Append: messages of conversation `$1` already stored for (sender, client_msg_id) pairs
/// `($2[i], $3[i])`.
pub static EXISTING: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conv_key = $1 \
         AND (m.sender, m.client_msg_id) IN (SELECT * FROM unnest($2::text[], $3::text[]))"
    )
});

/// Append: bump conversation `$1` to last seq `$2` and time `$3`, and insert the rows
/// (seqs `$4`, senders `$5`, recipients `$6`, kinds `$7`, bodies `$8`, attributes `$9`,
/// client ids `$10`). Each sender's read marker moves to their newest message (one's own
/// messages are read). A PEER conversation (`$11`) stamps both participants' rows: that is how
/// their change feeds find it (two rows, not a row per member); in a group only the senders'
/// rows are touched.
pub const BUMP_INSERT: &str = "WITH bump AS (
         UPDATE conversations SET last_seq = $2, last_time_ms = $3,
                                  change_xid = pg_current_xact_id()
         WHERE conv_key = $1
     ), touched AS (
         UPDATE user_conversations uc SET change_xid = pg_current_xact_id(),
             read_seq = greatest(uc.read_seq, coalesce(
                 (SELECT max(t.s) FROM unnest($4::bigint[], $5::text[]) AS t(s, snd)
                  WHERE t.snd = uc.user_id), 0))
         WHERE uc.conv_key = $1 AND ($11 OR uc.user_id = ANY($5))
     )
     INSERT INTO messages (conv_key, seq, sender, recipient, msg_type, body,
                           attributes, client_msg_id, server_time_ms)
     SELECT $1, s, snd, rcp, k, b, a, c, $3
     FROM unnest($4::bigint[], $5::text[], $6::text[], $7::smallint[], $8::bytea[],
                 $9::jsonb[], $10::text[]) AS t(s, snd, rcp, k, b, a, c)
     RETURNING seq, msg_id";

/// Append one message to existing conversation `$1` at time `$2` in one statement: when it
/// is a PEER conversation (`$3`) or sender `$4` is a member, bump the seq under the row lock
/// and insert (recipient `$5`, kind `$6`, body `$7`, attributes `$8`, client id `$9`).
/// Returns `(seq, msg_id, server_time_ms)`, or no row when nothing was written. Moves the
/// sender's read marker and stamps the change feed as [`BUMP_INSERT`] does.
pub const APPEND_ONE: &str = "WITH bump AS (
         UPDATE conversations SET last_seq = last_seq + 1,
                                  last_time_ms = greatest(last_time_ms, $2),
                                  change_xid = pg_current_xact_id()
         WHERE conv_key = $1
           AND ($3 OR EXISTS (SELECT 1 FROM user_conversations
                              WHERE conv_key = $1 AND user_id = $4 AND is_member))
         RETURNING last_seq, last_time_ms
     ), touched AS (
         UPDATE user_conversations uc SET change_xid = pg_current_xact_id(),
             read_seq = CASE WHEN uc.user_id = $4 THEN greatest(uc.read_seq, b.last_seq)
                             ELSE uc.read_seq END
         FROM bump b
         WHERE uc.conv_key = $1 AND ($3 OR uc.user_id = $4)
     )
     INSERT INTO messages (conv_key, seq, sender, recipient, msg_type, body,
                           attributes, client_msg_id, server_time_ms)
     SELECT $1, last_seq, $4, $5, $6, $7, $8, $9, last_time_ms FROM bump
     RETURNING seq, msg_id, server_time_ms";

/// Create conversation `$1` of kind `$2` if it does not exist yet.
pub const CREATE_CONVERSATION: &str =
    "INSERT INTO conversations (conv_key, kind) VALUES ($1, $2) ON CONFLICT DO NOTHING";

/// Make users `$2` participants of conversation `$1` of kind `$3`; a returning member is a
/// member again and keeps the one-way state from before. The returning member's stamp is the
/// proposed row's (the column's default, this transaction's id): Citus refuses a function
/// that is not immutable in `DO UPDATE SET`, and takes the default as any other value.
pub const ADD_PARTICIPANTS: &str = "INSERT INTO user_conversations (conv_key, user_id, kind)
     SELECT $1, u, $3 FROM (SELECT DISTINCT unnest($2::text[]) AS u) AS d
     ON CONFLICT (conv_key, user_id) DO UPDATE SET is_member = true,
                                                   change_xid = EXCLUDED.change_xid";

/// End the membership of users `$2` in conversation `$1`. It writes several rows, so it takes
/// the conversation's row lock first (the schema doc's "Lock order"): the rows it writes are
/// only written once that lock is granted. `uc.conv_key = $1` is implied by the join, but
/// Citus prunes shards by conditions on parameters only: without it the update runs on every
/// shard.
pub const REMOVE_MEMBERS: &str = "WITH locked AS (
         SELECT conv_key FROM conversations WHERE conv_key = $1 FOR NO KEY UPDATE)
     UPDATE user_conversations uc
     SET is_member = false, change_xid = pg_current_xact_id(), pinned_at_ms = NULL, marks = '{}'
     FROM locked
     WHERE uc.conv_key = $1 AND uc.conv_key = locked.conv_key AND uc.user_id = ANY($2)
       AND uc.is_member";

/// Which of message ids `$2` are in conversation `$1`, with their seqs.
pub const SEQS_OF_IDS: &str =
    "SELECT msg_id, seq FROM messages WHERE conv_key = $1 AND msg_id = ANY($2)";

/// Tombstones for user `$2` on seqs `$3` of conversation `$1`; returns the seqs newly hidden.
/// The user's row is stamped for the change feed in the same statement.
pub const TOMBSTONE: &str = "WITH hidden AS (
         INSERT INTO tombstones (conv_key, user_id, seq)
         SELECT $1, $2, s FROM unnest($3::bigint[]) AS s
         ON CONFLICT DO NOTHING RETURNING seq
     ), touched AS (
         UPDATE user_conversations SET change_xid = pg_current_xact_id()
         WHERE conv_key = $1 AND user_id = $2 AND EXISTS (SELECT 1 FROM hidden)
     )
     SELECT seq FROM hidden";

/// Raise user `$2`'s watermark in conversation `$1` to the newest seq stored at or before
/// time `$3` (never lowering it).
pub const HIDE_BEFORE_TIME: &str = "UPDATE user_conversations
     SET change_xid = pg_current_xact_id(),
         hidden_through_seq = greatest(hidden_through_seq,
         coalesce((SELECT m.seq FROM messages m
                   WHERE m.conv_key = $1 AND m.server_time_ms <= $3
                   ORDER BY m.server_time_ms DESC, m.seq DESC LIMIT 1), 0))
     WHERE conv_key = $1 AND user_id = $2";

/// FOR_ME removal of conversation `$1` by user `$2`: off the list through its last seq, and
/// with `$3` (delete_messages) every message so far hidden; the user's pin and marks go (the
/// read marker stays).
pub const REMOVE_FOR_ME: &str = "UPDATE user_conversations uc SET
         change_xid = pg_current_xact_id(), pinned_at_ms = NULL, marks = '{}',
         removed_through_seq = greatest(uc.removed_through_seq, c.last_seq),
         hidden_through_seq = CASE WHEN $3
             THEN greatest(uc.hidden_through_seq, c.last_seq)
             ELSE uc.hidden_through_seq END
     FROM conversations c
     WHERE c.conv_key = uc.conv_key AND uc.conv_key = $1 AND uc.user_id = $2";

/// FOR_EVERYONE purge of conversation `$1`: off every list through its last seq, and with
/// `$2` (delete_messages) every message so far hidden from everybody and its content erased
/// (body and attributes; the row's keys stay, so seq stays gapless and a retried append is
/// still recognised). Every participant's pin and marks go: only the rows that have some
/// are written (and, for PEER, both rows are stamped for the feed). One statement, so the
/// purge and the erasure commit together. Without `$2` the erasure's range is empty through
/// a column of `purge`, not through a constant: Citus routes a statement whose condition is
/// false to no shard at all, and its CTEs (the purge itself) would not run either.
pub const PURGE: &str = "WITH purge AS (
         UPDATE conversations SET
             change_xid = pg_current_xact_id(),
             cleared_through_seq = greatest(cleared_through_seq, last_seq),
             purged_through_seq = CASE WHEN $2
                 THEN greatest(purged_through_seq, last_seq)
                 ELSE purged_through_seq END
         WHERE conv_key = $1
         RETURNING purged_through_seq, kind),
     peers AS (
         UPDATE user_conversations uc SET change_xid = pg_current_xact_id(),
             pinned_at_ms = NULL, marks = '{}'
         FROM purge
         WHERE uc.conv_key = $1
           AND (purge.kind = 1 OR uc.pinned_at_ms IS NOT NULL OR uc.marks <> '{}'))
     UPDATE messages m SET body = ''::bytea, attributes = '{}'::jsonb
     FROM purge
     WHERE m.conv_key = $1
       AND m.seq <= CASE WHEN $2 THEN purge.purged_through_seq ELSE 0 END
       AND (octet_length(m.body) > 0 OR m.attributes <> '{}'::jsonb)";

/// Health: the database answers.
pub const PING: &str = "SELECT 1";

/// The caller's conversation row `uc` of conversation `c` can be listed: a member, with a
/// message above every removal and watermark.
const LISTABLE: &str = "uc.is_member AND c.last_seq > greatest(uc.removed_through_seq,
                        uc.hidden_through_seq, c.purged_through_seq, c.cleared_through_seq)";

/// `AND` [`LISTABLE`] when only listable conversations are wanted, else nothing.
fn only_listable_condition(only_listable: bool) -> String {
    if only_listable {
        format!("AND {LISTABLE}")
    } else {
        String::new()
    }
}

/// The state of one conversation as user `$1` sees it, for the change feed: the columns of
/// `SYNC_SNAPSHOT` and `SYNC_DELTA` after the candidates `s` are chosen. The newest visible
/// message is looked up only for a conversation that can be listed (`listable`).
fn sync_state(candidates: &str, only_listable: bool) -> String {
    let (listable, only) = (LISTABLE, only_listable_condition(only_listable));
    let read_state = read_state(&FENCED, "$6");
    let newest = newest_visible(&FENCED, "s.listable");
    format!(
        "SELECT s.conv_key, s.kind, s.last_time_ms, s.last_seq, s.is_member, s.floor,
                s.listable, {read_state}, {MESSAGE_COLUMNS}
         FROM (
             SELECT {ENTRY_COLUMNS}, {listable} AS listable
             FROM ({candidates}) ch
             JOIN user_conversations uc ON uc.conv_key = ch.conv_key AND uc.user_id = $1
             CROSS JOIN LATERAL (SELECT * FROM conversations c
                                 WHERE c.conv_key = ch.conv_key OFFSET 0) c
             WHERE (c.last_time_ms, c.conv_key) < ($3, $4) {only}
             ORDER BY c.last_time_ms DESC, c.conv_key DESC
             LIMIT $5) s
         LEFT JOIN LATERAL ({newest}) m ON true
         ORDER BY s.last_time_ms DESC, s.conv_key DESC"
    )
}

/// [`sync_state`] in [`Layout::Citus`]'s flat shape: the caller's rows of the kinds the feed
/// carries that pass `{changed}`, joined directly to their conversations and lookups (the same
/// columns, the same rules).
fn sync_state_flat(changed: &str, only_listable: bool) -> String {
    let (listable, only) = (LISTABLE, only_listable_condition(only_listable));
    let read_state = read_state(&FLAT, "$6");
    let (floor, newest) = (FLAT.floor, newest_visible(&FLAT, &format!("({listable})")));
    format!(
        "SELECT c.conv_key, c.kind, c.last_time_ms, c.last_seq, uc.is_member, {floor} AS floor,
                {listable} AS listable, {read_state}, {MESSAGE_COLUMNS}
         FROM user_conversations uc
         JOIN conversations c ON c.conv_key = uc.conv_key
         LEFT JOIN LATERAL ({newest}) m ON true
         WHERE uc.user_id = $1 AND uc.kind IN (1, 2) AND {changed}
           AND (c.last_time_ms, c.conv_key) < ($3, $4) {only}
         ORDER BY last_time_ms DESC, conv_key DESC
         LIMIT $5"
    )
}

/// The snapshot page's candidates: the user's memberships of the kinds the feed carries.
const SYNC_SNAPSHOT_CANDIDATES: &str = "SELECT uc.conv_key FROM user_conversations uc
         WHERE uc.user_id = $1 AND uc.is_member AND uc.kind IN (1, 2)";

/// A snapshot page of user `$1`'s synced conversations (PEER and GROUP, every one that can be
/// listed, whatever its activity), keyset after `($3, $4)`, limit `$5`. `$2` is unused
/// (typed like `SYNC_DELTA`'s, so both take the same parameters).
pub static SYNC_SNAPSHOT: LazyLock<String> =
    LazyLock::new(|| sync_state(SYNC_SNAPSHOT_CANDIDATES, true));

/// [`SYNC_SNAPSHOT`] on a Citus cluster ([`Layout::Citus`]).
pub static SYNC_SNAPSHOT_CITUS: LazyLock<String> =
    LazyLock::new(|| sync_state_flat("uc.is_member", true));

/// Changed since snapshot `$2`: stamped by a transaction the snapshot did not see.
fn changed_since(stamp: &str) -> String {
    format!(
        "{stamp} >= pg_snapshot_xmin($2::text::pg_snapshot)
           AND NOT pg_visible_in_snapshot({stamp}, $2::text::pg_snapshot)"
    )
}

/// A delta page of user `$1`: the conversations changed by a transaction that snapshot `$2`
/// (text form of `pg_snapshot`) did not see, keyset after `($3, $4)`, limit `$5`. Changed:
/// the user's own row was stamped (their removals, watermarks, membership, and every change
/// of a PEER conversation, which stamps both participants' rows), or a GROUP the user is a
/// member of was (its messages and purges stamp only the conversation's row).
pub static SYNC_DELTA: LazyLock<String> = LazyLock::new(|| {
    let (own, group) = (
        changed_since("uc.change_xid"),
        changed_since("c.change_xid"),
    );
    sync_state(
        &format!(
            "SELECT uc.conv_key FROM user_conversations uc
             WHERE uc.user_id = $1 AND uc.kind IN (1, 2) AND {own}
             UNION
             SELECT uc.conv_key FROM user_conversations uc
             JOIN conversations c ON c.conv_key = uc.conv_key
             WHERE uc.user_id = $1 AND uc.is_member AND uc.kind = 2 AND {group}"
        ),
        false,
    )
});

/// [`SYNC_DELTA`] on a Citus cluster ([`Layout::Citus`]): the union's two branches as one
/// condition on the joined row (a user has one row per conversation, so nothing repeats).
pub static SYNC_DELTA_CITUS: LazyLock<String> = LazyLock::new(|| {
    let (own, group) = (
        changed_since("uc.change_xid"),
        changed_since("c.change_xid"),
    );
    sync_state_flat(
        &format!("(({own}) OR (uc.is_member AND uc.kind = 2 AND {group}))"),
        false,
    )
});

/// The feed's statement for `layout`: a delta page when `delta`, else a snapshot page.
pub fn sync_statement(layout: Layout, delta: bool) -> &'static str {
    match (layout, delta) {
        (Layout::Single, false) => &SYNC_SNAPSHOT,
        (Layout::Single, true) => &SYNC_DELTA,
        (Layout::Citus, false) => &SYNC_SNAPSHOT_CITUS,
        (Layout::Citus, true) => &SYNC_DELTA_CITUS,
    }
}

/// The parameter types of `SYNC_SNAPSHOT` and `SYNC_DELTA` (`$6`: where unread counts
/// saturate).
pub const SYNC_PARAMETERS: [tokio_postgres::types::Type; 6] = {
    use tokio_postgres::types::Type;
    [
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::TEXT,
        Type::INT8,
        Type::INT8,
    ]
};

/// Citus only: a transaction that writes several conversations (two-phase commit there)
/// holds the feed's fence against feed reads taking their snapshot (see the migration
/// `V6__feed_fence.sql` and docs/schema.md, "Distribution (Citus)").
pub const FENCE_WRITER: &str = "LOCK TABLE feed_fence IN SHARE MODE";

/// Citus only: a feed read takes the fence before its snapshot, which LOCK does not take in a
/// repeatable-read transaction (PostgreSQL takes it at the first query after).
pub const FENCE_READER: &str = "LOCK TABLE feed_fence IN ROW EXCLUSIVE MODE";

/// The snapshot this (repeatable read) transaction reads, as text.
pub const CURRENT_SNAPSHOT: &str = "SELECT pg_current_snapshot()::text";

/// Messages of conversations `$1` that user `$2` removed by id in a transaction snapshot
/// `$3` did not see: `(conv_key, msg_id)` in conversation and seq order.
pub const REMOVED_SINCE: &str = "SELECT t.conv_key, m.msg_id
     FROM tombstones t
     JOIN messages m ON m.conv_key = t.conv_key AND m.seq = t.seq
     WHERE t.conv_key = ANY($1) AND t.user_id = $2
       AND t.created_xid >= pg_snapshot_xmin($3::text::pg_snapshot)
       AND NOT pg_visible_in_snapshot(t.created_xid, $3::text::pg_snapshot)
     ORDER BY t.conv_key, t.seq";

/// DigestHistory: per bucket of `$4` seqs from `$2` through `$3` of conversation `$1`, the
/// messages reader `$6` may see above floor `$5` (tombstones excluded): bucket number, count,
/// and SHA-256 over `seq || msg_id || edit_version` (8, 8 and 4 bytes, big-endian) in seq
/// order. Buckets without a visible message have no row.
pub const DIGEST: &str = "SELECT (m.seq - $2::bigint) / $4::bigint AS bucket, count(*) AS count,
         sha256(string_agg(int8send(m.seq) || int8send(m.msg_id) || int4send(m.edit_version),
                           ''::bytea ORDER BY m.seq)) AS digest
     FROM messages m
     WHERE m.conv_key = $1 AND m.seq >= greatest($2::bigint, $5::bigint + 1)
       AND m.seq <= $3::bigint AND NOT m.recalled
       AND NOT EXISTS (SELECT 1 FROM tombstones t
           WHERE t.conv_key = $1 AND t.user_id = $6 AND t.seq = m.seq OFFSET 0)
     GROUP BY 1 ORDER BY 1";

/// The columns of [`VIEW`] as a CTE `v` (with the caller's marker), for the statements that
/// fold the access check into themselves; `history::view_of` reads its verdict from them.
const VIEW_CTE: &str = "v AS (
         SELECT c.purged_through_seq, uc.hidden_through_seq, uc.is_member, c.last_seq,
                uc.read_seq AS was_read
         FROM conversations c LEFT JOIN user_conversations uc
           ON uc.conv_key = c.conv_key AND uc.user_id = $2
         WHERE c.conv_key = $1)";

/// [`VIEW_CTE`] taking the conversation's row lock first: the lock order's first step for the
/// statements that write more than one row of a conversation (see the schema doc's "Lock
/// order"). Every later lock of the statement waits for this CTE's row, and the row it answers
/// is the newest committed version once the lock is granted.
const VIEW_CTE_LOCKED: &str = "v AS (
         SELECT c.purged_through_seq, uc.hidden_through_seq, uc.is_member, c.last_seq,
                uc.read_seq AS was_read
         FROM conversations c LEFT JOIN user_conversations uc
           ON uc.conv_key = c.conv_key AND uc.user_id = $2
         WHERE c.conv_key = $1
         FOR NO KEY UPDATE OF c)";

/// MarkRead in one statement: user `$2` reads conversation `$1` up to message `$3` (NULL: the
/// newest seq); `$4` says it is a GROUP / CHATROOM (membership required), `$5` caps the
/// count. The marker only moves forward, and a move stamps the row (and, for PEER, the
/// other participant's: the receipt reaches their feed). Answers the view's columns (no row:
/// no such conversation), `target_seq` (NULL: `$3` is not in it), the marker now and the
/// unread count with it. A PEER conversation's MarkRead writes two rows, so it takes the
/// conversation's row lock first when it moves the marker ([`MARK_READ_PEER`]); a group's
/// writes the caller's row only and takes no lock that appends would queue behind
/// ([`MARK_READ_GROUP`]).
fn mark_read(lock: bool) -> String {
    let unread = unread(
        "$1",
        "$2",
        "r.read_seq",
        "r.floor",
        "v.last_seq",
        "$5::bigint",
    );
    // The PEER form locks the conversation's row only when the marker is to move: a MarkRead
    // that changes nothing (the common "opened an already read conversation") stays a read,
    // with no transaction id and no WAL flush at commit. `moved` reads `locked`, so the row
    // lock comes before the rows it writes.
    let (locked, from) = if lock {
        (
            "locked AS (
             SELECT c.conv_key FROM conversations c, v, target t
             WHERE c.conv_key = $1 AND coalesce(v.was_read, 0) < t.seq
             FOR NO KEY UPDATE OF c),",
            "target, locked",
        )
    } else {
        ("", "target")
    };
    format!(
        "WITH {VIEW_CTE},
         target AS (
             SELECT CASE WHEN $3::bigint IS NULL THEN v.last_seq
                         ELSE (SELECT a.seq FROM messages a
                               WHERE a.conv_key = $1 AND a.msg_id = $3::bigint) END AS seq
             FROM v WHERE v.is_member IS TRUE OR NOT $4::bool),
         {locked}
         moved AS (
             UPDATE user_conversations uc
             SET read_seq = target.seq, change_xid = pg_current_xact_id()
             FROM {from}
             WHERE uc.conv_key = $1 AND uc.user_id = $2 AND uc.read_seq < target.seq
             RETURNING uc.read_seq),
         peer AS (
             UPDATE user_conversations o SET change_xid = pg_current_xact_id()
             FROM moved WHERE o.conv_key = $1 AND o.user_id <> $2 AND o.kind = 1)
         SELECT v.purged_through_seq, v.hidden_through_seq, v.is_member, v.last_seq,
                t.seq AS target_seq, r.read_seq, {unread} AS unread_count
         FROM v LEFT JOIN target t ON true
         CROSS JOIN LATERAL (
             SELECT greatest(coalesce(v.was_read, 0), coalesce((SELECT read_seq FROM moved), 0))
                        AS read_seq,
                    greatest(coalesce(v.hidden_through_seq, 0), v.purged_through_seq) AS floor) r"
    )
}

/// [`mark_read`] of a PEER conversation: it writes two rows, so the conversation's row is
/// locked first (when the marker moves).
pub static MARK_READ_PEER: LazyLock<String> = LazyLock::new(|| mark_read(true));

/// [`mark_read`] of a GROUP or CHATROOM: the caller's row only, no conversation lock.
pub static MARK_READ_GROUP: LazyLock<String> = LazyLock::new(|| mark_read(false));

/// Serialises one user's pin changes (the limit is checked and applied under it).
pub const LOCK_PINS: &str = "SELECT pg_advisory_xact_lock(hashtextextended('pins:' || $1, 0))";

/// When user `$2` pinned conversation `$1` (NULL: not pinned).
pub const PINNED_AT: &str =
    "SELECT pinned_at_ms FROM user_conversations WHERE conv_key = $1 AND user_id = $2";

/// How many conversations user `$1` has pinned, conversation `$2` excepted.
pub const PINNED_OTHERS: &str = "SELECT count(*) FROM user_conversations
     WHERE user_id = $1 AND pinned_at_ms IS NOT NULL AND conv_key <> $2";

/// Pins (`$3` the time, kept if already pinned) or, with `$3` NULL, unpins conversation `$1`
/// for user `$2`; the row is stamped only when it changes.
pub const PIN: &str = "UPDATE user_conversations
     SET pinned_at_ms = CASE WHEN $3::bigint IS NULL THEN NULL
                             ELSE coalesce(pinned_at_ms, $3::bigint) END,
         change_xid = pg_current_xact_id()
     WHERE conv_key = $1 AND user_id = $2
       AND (pinned_at_ms IS NULL) <> ($3::bigint IS NULL)";

/// Adds marks `$3` and removes `$4` on user `$2`'s conversation `$1`, when the result has at
/// most `$5` marks; returns the marks (sorted, byte order), or no row past the limit. The
/// row is stamped only when the marks change.
pub const MARK: &str = "WITH next AS (
         SELECT uc.marks AS before, ARRAY(
             SELECT DISTINCT x COLLATE \"C\" FROM unnest(uc.marks || $3::text[]) AS x
             WHERE x <> ALL($4::text[]) ORDER BY 1) AS after
         FROM user_conversations uc WHERE uc.conv_key = $1 AND uc.user_id = $2
     ), changed AS (
         UPDATE user_conversations uc SET marks = next.after, change_xid = pg_current_xact_id()
         FROM next
         WHERE uc.conv_key = $1 AND uc.user_id = $2 AND next.after <> next.before
           AND cardinality(next.after) <= $5::bigint
     )
     SELECT next.after AS marks FROM next WHERE cardinality(next.after) <= $5::bigint";

/// Recall and edit share their shape: the view `v`, taking the conversation's row lock (the
/// lock order's first step: a change then locks the message and stamps other rows); message
/// `$3` of conversation `$1`, locked,
/// as `target` (under the lock: a concurrent change is seen, never overwritten); `done`, the
/// change itself, made only when every rule holds (`{allowed}`, in SQL so that the check and
/// the change are one atomic statement; `change::judge` says in Rust which rule failed when
/// nothing changed); then the conversation stamped where the feed looks: a GROUP's
/// `conversations` row, a PEER conversation's two participant rows (`SYNC_DELTA` reads the
/// `conversations` stamp of groups only; never a row per member). `$2` is the acting user,
/// `$4` says it is a GROUP / CHATROOM (membership required). Answers the view's columns (no
/// row: no such conversation), the target's as `t_*` (NULL: not in it), and `{answer}`
/// (which may read `done` as `d`).
fn change(set: &str, allowed: &str, returning: &str, answer: &str) -> String {
    format!(
        "WITH {VIEW_CTE_LOCKED},
         target AS (
             SELECT m.seq, m.sender, m.server_time_ms, m.recalled, m.edit_version
             FROM messages m, v
             WHERE m.conv_key = $1 AND m.msg_id = $3 AND (v.is_member IS TRUE OR NOT $4::bool)
             FOR UPDATE OF m),
         done AS (
             UPDATE messages m SET {set}, change_xid = pg_current_xact_id()
             FROM target t, v
             WHERE m.conv_key = $1 AND m.seq = t.seq AND t.seq > v.purged_through_seq
               AND t.sender = $2 AND NOT t.recalled AND {allowed}
             RETURNING {returning}),
         conv AS (
             UPDATE conversations SET change_xid = pg_current_xact_id()
             WHERE conv_key = $1 AND $4::bool AND EXISTS (SELECT 1 FROM done)),
         parts AS (
             UPDATE user_conversations uc SET change_xid = pg_current_xact_id()
             WHERE uc.conv_key = $1 AND NOT $4::bool AND EXISTS (SELECT 1 FROM done))
         SELECT v.purged_through_seq, v.hidden_through_seq, v.is_member, v.last_seq,
                t.seq AS t_seq, t.sender AS t_sender, t.server_time_ms AS t_server_time_ms,
                t.recalled AS t_recalled, t.edit_version AS t_edit_version, {answer}
         FROM v LEFT JOIN target t ON true LEFT JOIN done d ON true"
    )
}

/// Recalls message `$3` (see [`change`]) at time `$5` within window `$6` (ms): gone for
/// everybody, its content erased. Answers `changed`.
pub static RECALL: LazyLock<String> = LazyLock::new(|| {
    change(
        "recalled = true, body = ''::bytea, attributes = '{}'::jsonb",
        "$5::bigint - t.server_time_ms <= $6::bigint",
        "m.seq",
        "d.seq IS NOT NULL AS changed",
    )
});

/// Edits message `$3` (see [`change`]): body `$5`, attributes `$6`, at time `$7`, while it has
/// fewer than `$8` edits. Answers the message as it is now (NULL columns when unchanged).
pub static EDIT: LazyLock<String> = LazyLock::new(|| {
    change(
        "body = $5, attributes = $6, edit_version = m.edit_version + 1, edited_at_ms = $7",
        "t.edit_version < $8::integer",
        MESSAGE_COLUMNS,
        "d.*",
    )
});

/// Messages of conversations `$1` recalled or edited in a transaction snapshot `$3` did not
/// see, with whether user `$2` removed them (an edited message they removed is not theirs to
/// see). The removal is a join on the tombstones' key, not a correlated subquery: Citus then
/// prunes to the shards of `$1` (with the subquery it read every shard).
pub static CHANGED_MESSAGES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT m.conv_key, m.recalled, {MESSAGE_COLUMNS}, t.seq IS NOT NULL AS removed
         FROM messages m
         LEFT JOIN tombstones t ON t.conv_key = m.conv_key AND t.user_id = $2 AND t.seq = m.seq
         WHERE m.conv_key = ANY($1) AND m.change_xid <> '0'
           AND m.change_xid >= pg_snapshot_xmin($3::text::pg_snapshot)
           AND NOT pg_visible_in_snapshot(m.change_xid, $3::text::pg_snapshot)
         ORDER BY m.conv_key, m.seq"
    )
});
