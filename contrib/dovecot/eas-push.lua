-- eas-push.lua: Dovecot's mailbox events for eas-gateway (push without a held IMAP connection).
--
-- Loaded by Dovecot's push_notification Lua driver in every imap and lmtp process (see
-- eas-push.conf next to this file and docs/deploy/dovecot-events.md). For each committed
-- transaction it sends ONE UDP datagram to the gateway naming the user, every mailbox the
-- transaction changed with the kinds of change, and every mailbox created, deleted or renamed.
-- A mailbox that only got new messages (a delivery, an APPEND, a copy or move in) is reported
-- with its UIDVALIDITY and the highest new UID, which the event itself carries; any other
-- change with the mailbox's counters after it (UIDVALIDITY, UIDNEXT, MESSAGES, HIGHESTMODSEQ),
-- read from Dovecot. Reading them means opening the mailbox again, which costs time growing
-- with its size (a maildir's uidlist), so deliveries never pay it. No message content
-- (sender, subject, snippet) is ever sent.
--
-- Fire-and-forget: sendto() on an unconnected UDP socket returns at once whether or not the
-- gateway listens, so a stopped or slow gateway never delays a delivery. Lost datagrams only
-- make a phone hear of news later: the gateway treats them as hints and checks them against
-- what each device already has.
--
-- Datagram (text, lines end in \n; names are UTF-8 with %, control characters and space
-- written as %XX):
--   EASPUSH1
--   s <sender> <sequence> <unix time>     sender: random per process; sequence: 1, 2, 3 ...
--   u <user>
--   n <mailbox> <kinds> <uidvalidity> <highest new uid>       (only new messages)
--   m <mailbox> <kinds> <uidvalidity> <uidnext> <messages> <highestmodseq>   ("-" if unknown)
--   x <mailbox> <create|delete|rename> [<old name>]
--   h <HMAC-SHA256 of every byte above, hex>
-- kinds: N new (delivery), A append, S flags set, C flags cleared, E expunge.
--
-- Settings (plugin { } block):
--   eas_push_target      = 127.0.0.1:5829    one or more IPv4/IPv6 literal:port or
--                                            unix:/path/of/socket (the gateway's
--                                            push.events_socket), space separated
--   eas_push_secret_file = /etc/dovecot/eas-push.secret   shared with the gateway; readable
--                                                         by the mail user

local socket = require("socket")

local M32 = 0xffffffff

-- SHA-256 (FIPS 180-4) and HMAC (RFC 2104) on Lua 5.3+ integers.
local K = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}

local function ror(x, n)
  return ((x >> n) | (x << (32 - n))) & M32
end

local function sha256(msg)
  local len = #msg
  msg = msg .. "\128" .. string.rep("\0", (55 - len) % 64) .. string.pack(">I8", len * 8)
  local h0, h1, h2, h3 = 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a
  local h4, h5, h6, h7 = 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
  local w = {}
  for pos = 1, #msg, 64 do
    for i = 1, 16 do
      w[i] = string.unpack(">I4", msg, pos + (i - 1) * 4)
    end
    for i = 17, 64 do
      local x, y = w[i - 15], w[i - 2]
      local s0 = ror(x, 7) ~ ror(x, 18) ~ (x >> 3)
      local s1 = ror(y, 17) ~ ror(y, 19) ~ (y >> 10)
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) & M32
    end
    local a, b, c, d, e, f, g, h = h0, h1, h2, h3, h4, h5, h6, h7
    for i = 1, 64 do
      local t1 = h + (ror(e, 6) ~ ror(e, 11) ~ ror(e, 25)) + ((e & f) ~ (~e & g)) + K[i] + w[i]
      local t2 = (ror(a, 2) ~ ror(a, 13) ~ ror(a, 22)) + ((a & b) ~ (a & c) ~ (b & c))
      h, g, f, e, d, c, b, a = g, f, e, (d + t1) & M32, c, b, a, (t1 + t2) & M32
    end
    h0, h1, h2, h3 = (h0 + a) & M32, (h1 + b) & M32, (h2 + c) & M32, (h3 + d) & M32
    h4, h5, h6, h7 = (h4 + e) & M32, (h5 + f) & M32, (h6 + g) & M32, (h7 + h) & M32
  end
  return string.pack(">I4I4I4I4I4I4I4I4", h0, h1, h2, h3, h4, h5, h6, h7)
end

local pads = {} -- key -> { inner pad, outer pad }

local function hmac_sha256_hex(key, msg)
  local p = pads[key]
  if p == nil then
    local k = key
    if #k > 64 then
      k = sha256(k)
    end
    k = k .. string.rep("\0", 64 - #k)
    p = {
      (k:gsub(".", function(c) return string.char(c:byte() ~ 0x36) end)),
      (k:gsub(".", function(c) return string.char(c:byte() ~ 0x5c) end)),
    }
    pads[key] = p
  end
  local mac = sha256(p[2] .. sha256(p[1] .. msg))
  return (mac:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- Per process: who we are to the gateway, and how many datagrams we sent.
local function random_sender()
  local f = io.open("/dev/urandom", "rb")
  if f then
    local bytes = f:read(8)
    f:close()
    if bytes and #bytes == 8 then
      return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
    end
  end
  return string.format("%x%x", os.time(), math.random(0, M32))
end

local sender = random_sender()
local sequence = 0
local udp = nil
local unix = nil -- Unix datagram socket, made on first use
local secrets = {} -- file name -> contents (read once per process)
local targets = {} -- setting -> list of {host, port}

local function secret(path)
  local s = secrets[path]
  if s == nil then
    local f = io.open(path, "rb")
    if not f then
      return nil
    end
    s = f:read("a") or ""
    f:close()
    s = s:gsub("%s+$", "")
    secrets[path] = s
  end
  return s
end

local function parse_targets(setting)
  local t = targets[setting]
  if t == nil then
    t = {}
    for item in setting:gmatch("%S+") do
      local path = item:match("^unix:(.+)$")
      local host, port = item:match("^%[?([^%]]+)%]?:(%d+)$")
      if path then
        table.insert(t, { path = path })
      elseif host then
        table.insert(t, { host, tonumber(port) })
      end
    end
    targets[setting] = t
  end
  return t
end

local function escape(s)
  return (tostring(s):gsub("[%%%c ]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function mark(ctx, event, kind)
  local mailbox = event.mailbox
  local b = ctx.boxes[mailbox]
  if b == nil then
    b = { uid = 0 }
    ctx.boxes[mailbox] = b
    table.insert(ctx.order, mailbox)
  end
  b[kind] = true
  if (kind == "N" or kind == "A") and event.uid then
    if event.uid > b.uid then
      b.uid = event.uid
    end
    b.uidvalidity = event.uid_validity
  end
end

function dovecot_lua_notify_begin_txn(user)
  return { user = user, boxes = {}, order = {}, tree = {} }
end

function dovecot_lua_notify_event_message_new(ctx, event) mark(ctx, event, "N") end
function dovecot_lua_notify_event_message_append(ctx, event) mark(ctx, event, "A") end
function dovecot_lua_notify_event_flags_set(ctx, event) mark(ctx, event, "S") end
function dovecot_lua_notify_event_flags_clear(ctx, event) mark(ctx, event, "C") end
function dovecot_lua_notify_event_message_expunge(ctx, event) mark(ctx, event, "E") end

function dovecot_lua_notify_event_mailbox_create(ctx, event)
  table.insert(ctx.tree, "x " .. escape(event.mailbox) .. " create\n")
end
function dovecot_lua_notify_event_mailbox_delete(ctx, event)
  table.insert(ctx.tree, "x " .. escape(event.mailbox) .. " delete\n")
end
function dovecot_lua_notify_event_mailbox_rename(ctx, event)
  table.insert(ctx.tree, "x " .. escape(event.mailbox) .. " rename " .. escape(event.mailbox_old) .. "\n")
end

-- The mailbox's counters as they are now (after the commit), or "- - - -".
local function counters(user, name)
  local ok, st = pcall(function()
    local box = user:mailbox(name)
    local s = box:status(dovecot.storage.STATUS_UIDVALIDITY, dovecot.storage.STATUS_UIDNEXT,
      dovecot.storage.STATUS_MESSAGES, dovecot.storage.STATUS_HIGHESTMODSEQ)
    box:free()
    return s
  end)
  if ok and st and st.uidvalidity then
    return string.format("%d %d %d %d", st.uidvalidity, st.uidnext, st.messages, st.highest_modseq or 0)
  end
  return "- - - -"
end

local function send(ctx, body, key, dests)
  sequence = sequence + 1
  local text = "EASPUSH1\ns " .. sender .. " " .. sequence .. " " .. os.time() .. "\nu "
    .. escape(ctx.user.username) .. "\n" .. body
  text = text .. "h " .. hmac_sha256_hex(key, text) .. "\n"
  for _, d in ipairs(dests) do
    if d.path then
      if unix == nil then
        local ok, m = pcall(require, "socket.unix")
        unix = ok and m.dgram() or false
        if unix then
          -- A full receive queue must not block a delivery: fail instead.
          unix:settimeout(0)
        end
      end
      if unix then
        unix:sendto(text, d.path)
      end
    else
      if udp == nil then
        udp = socket.udp() or false
        if udp then
          udp:settimeout(0)
        end
      end
      if udp then
        -- Unconnected UDP: never waits, ignores a closed port.
        udp:sendto(text, d[1], d[2])
      end
    end
  end
end

function dovecot_lua_notify_end_txn(ctx, success)
  if success == false or (#ctx.order == 0 and #ctx.tree == 0) then
    return
  end
  local setting = ctx.user:plugin_getenv("eas_push_target")
  local path = ctx.user:plugin_getenv("eas_push_secret_file")
  if not setting or setting == "" or not path or path == "" then
    return
  end
  local key = secret(path)
  if key == nil or key == "" then
    dovecot.i_error("eas-push: cannot read eas_push_secret_file " .. path)
    return
  end
  local dests = parse_targets(setting)
  local lines = {}
  for _, line in ipairs(ctx.tree) do
    table.insert(lines, line)
  end
  for _, name in ipairs(ctx.order) do
    local b = ctx.boxes[name]
    local kinds = ""
    for _, k in ipairs({ "N", "A", "S", "C", "E" }) do
      if b[k] then
        kinds = kinds .. k
      end
    end
    if not (b.S or b.C or b.E) and b.uid > 0 and b.uidvalidity then
      table.insert(lines, string.format("n %s %s %d %d\n", escape(name), kinds, b.uidvalidity, b.uid))
    else
      table.insert(lines, "m " .. escape(name) .. " " .. kinds .. " " .. counters(ctx.user, name) .. "\n")
    end
  end
  -- Datagrams stay well below what loopback carries at once.
  local body = ""
  for _, line in ipairs(lines) do
    if #body + #line > 8000 and #body > 0 then
      send(ctx, body, key, dests)
      body = ""
    end
    body = body .. line
  end
  send(ctx, body, key, dests)
end
