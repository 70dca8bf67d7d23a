-- The rest of this file is slurm-qpu's submit-time policy; it reads only QPU_POLICY above.
--
-- A job's --qpu value reaches slurmctld in job_desc.spank_job_env as
-- "_SLURM_SPANK_OPTION_qpu_qpu=NAMES": the very entry the plugin's prolog reads, so what
-- is checked here is what gets acquired. sbatch, salloc and srun send one such entry; a
-- client that talks to libslurm directly can send several, or the form slurmd gives the
-- prolog ("SPANK_" in front, which slurmd passes on as it is). Which of several the
-- prolog reads need not be the one a check here would see (slurmd merges the list into
-- the prolog's environment, the last entry of a name winning; pairs() has no order),
-- so a job with more than one is refused, and both forms count as --qpu. The acquiring
-- side checks the QPUs' policy and licenses against slurmctld's record of the job too
-- (docs/security.md, "Duplicate --qpu entries"). For every QPU named this script
--   * refuses the job if its partition, account or QOS may not use the QPU,
--   * adds the QPU's license (qpu_<name>:1) to the job's licenses: the QPU's
--     concurrency cap (Licenses=qpu_<name>:<max_jobs> in slurm.conf) then holds whether or
--     not the user asked for the license, and jobs over the cap wait PENDING (Licenses),
-- and refuses later changes (scontrol update) that would drop a license or move the job
-- to a partition, account or QOS the QPU does not allow.
--
-- A site with its own job_submit.lua: keep that file, paste QPU_POLICY and this part
-- above it, and call slurm_qpu_submit / slurm_qpu_modify from your two functions.

local OPTION = "_SLURM_SPANK_OPTION_qpu_qpu="
local OPTION_FORMS = {OPTION, "SPANK_" .. OPTION}
local ANY = "any:"

-- Every --qpu value in a job's SPANK environment (either form), in no particular order.
local function qpu_requests(env)
	local found = {}
	for _, entry in pairs(env or {}) do
		for _, form in ipairs(OPTION_FORMS) do
			if type(entry) == "string" and string.sub(entry, 1, #form) == form then
				table.insert(found, string.sub(entry, #form + 1))
			end
		end
	end
	return found
end

local function split(text)
	local items = {}
	for item in string.gmatch(text or "", "[^,]+") do
		item = string.gsub(item, "^%s*(.-)%s*$", "%1")
		if item ~= "" then
			table.insert(items, item)
		end
	end
	return items
end

local function glob_matches(pattern, name)
	local lua = "^" .. string.gsub(pattern, "[%^%$%(%)%%%.%[%]%+%-]", "%%%0")
	lua = string.gsub(lua, "%*", ".*")
	lua = string.gsub(lua, "%?", ".") .. "$"
	return string.match(name, lua) ~= nil
end

-- The QPUs a request names; an "any:PATTERN" selection names every QPU it may pick.
local function requested_qpus(raw)
	local names, unknown = {}, {}
	for _, item in ipairs(split(raw)) do
		if string.sub(item, 1, #ANY) == ANY or string.find(item, "=", 1, true) then
			-- a selection (any:FILTER or a bare key=value constraint): its name glob is
			-- the term without '=', or name=GLOB; the plugin picks and checks the policy
			local pattern = "*"
			for term in string.gmatch(string.gsub(item, "^" .. ANY, ""), "[^&]+") do
				if not string.find(term, "=", 1, true) then
					pattern = term
				elseif string.sub(term, 1, 5) == "name=" then
					pattern = string.sub(term, 6)
				end
			end
			for name, _ in pairs(QPU_POLICY) do
				if glob_matches(pattern, name) then
					names[name] = "any"
				end
			end
		elseif QPU_POLICY[item] ~= nil then
			names[item] = "named"
		else
			table.insert(unknown, item)
		end
	end
	return names, unknown
end

local function listed(list, value)
	if list == nil then
		return true
	end
	for _, allowed in ipairs(list) do
		if allowed == value then
			return true
		end
	end
	return false
end

local function default_partition(part_list)
	for name, part in pairs(part_list or {}) do
		if part.flag_default == 1 then
			return name
		end
	end
	return nil
end

-- Why the job may not use the QPU, or nil.
local function refusal(name, policy, partitions, account, qos)
	if policy.partitions ~= nil then
		if #partitions == 0 then
			return string.format("QPU %s is only for partition(s) %s: add --partition=%s",
				name, table.concat(policy.partitions, ","), policy.partitions[1])
		end
		for _, partition in ipairs(partitions) do
			if not listed(policy.partitions, partition) then
				return string.format("QPU %s may not be used from partition %s; allowed: %s",
					name, partition, table.concat(policy.partitions, ","))
			end
		end
	end
	if not listed(policy.accounts, account) then
		return string.format("QPU %s may not be used by account %s; allowed: %s",
			name, tostring(account), table.concat(policy.accounts, ","))
	end
	if not listed(policy.qos, qos) then
		return string.format("QPU %s may not be used with QOS %s; allowed: %s",
			name, tostring(qos), table.concat(policy.qos, ","))
	end
	return nil
end

-- "a:1,qpu_x:0" plus the named QPUs' licenses at one each (a count the user gave for a
-- QPU license is replaced: the cap counts jobs, one each).
local function with_licenses(current, names)
	local kept = {}
	for _, item in ipairs(split(current)) do
		local lic = string.match(item, "^([^:@]+)")
		local is_qpu = false
		for name, how in pairs(names) do
			if how == "named" and lic == QPU_POLICY[name].license then
				is_qpu = true
			end
		end
		if not is_qpu then
			table.insert(kept, item)
		end
	end
	for name, how in pairs(names) do
		if how == "named" then
			table.insert(kept, QPU_POLICY[name].license .. ":1")
		end
	end
	table.sort(kept)
	return table.concat(kept, ",")
end

local function keeps_licenses(licenses, names)
	local present = {}
	for _, item in ipairs(split(licenses)) do
		present[item] = true
	end
	for name, how in pairs(names) do
		if how == "named" and not present[QPU_POLICY[name].license .. ":1"] then
			return false
		end
	end
	return true
end

local function check(names, partitions, account, qos)
	for name, how in pairs(names) do
		local why = refusal(name, QPU_POLICY[name], partitions, account, qos)
		if why ~= nil and how == "named" then
			return why
		end
	end
	return nil
end

function slurm_qpu_submit(job_desc, part_list, submit_uid)
	local requests = qpu_requests(job_desc.spank_job_env)
	if #requests == 0 then
		return slurm.SUCCESS
	end
	if #requests > 1 then
		slurm.log_user("--qpu: refused: the job carries %d --qpu values (%s), and which one "
			.. "its prolog would use is not certain; submit it with a single --qpu",
			#requests, table.concat(requests, " "))
		slurm.log_info("slurm-qpu: refused a job of uid %u with %d --qpu values",
			submit_uid, #requests)
		return slurm.ERROR
	end
	local raw = requests[1]
	local names, unknown = requested_qpus(raw)
	if #unknown > 0 then
		slurm.log_user("--qpu: unknown QPU name(s) %s; see: slurm-qpu list",
			table.concat(unknown, ","))
		return slurm.ERROR
	end
	local partitions = split(job_desc.partition or default_partition(part_list))
	local account = job_desc.account or job_desc.default_account
	local qos = job_desc.qos or job_desc.default_qos or "normal"
	local why = check(names, partitions, account, qos)
	if why ~= nil then
		slurm.log_user("--qpu=%s refused: %s", raw, why)
		slurm.log_info("slurm-qpu: refused a job of uid %u: %s", submit_uid, why)
		return slurm.ERROR
	end
	job_desc.licenses = with_licenses(job_desc.licenses, names)
	return slurm.SUCCESS
end

function slurm_qpu_modify(job_desc, job_rec, part_list, modify_uid)
	local requests = qpu_requests(job_rec.spank_job_env)
	if #requests == 0 or modify_uid == 0 then
		return slurm.SUCCESS
	end
	if #requests > 1 then
		-- queued before this check existed: what it asks for is not certain
		slurm.log_user("--qpu: change refused: the job carries %d --qpu values; "
			.. "cancel it and submit it with a single --qpu", #requests)
		slurm.log_info("slurm-qpu: refused a change by uid %u of a job with %d --qpu values",
			modify_uid, #requests)
		return slurm.ESLURM_ACCESS_DENIED or slurm.ERROR
	end
	local raw = requests[1]
	local names = requested_qpus(raw)
	if job_desc.licenses ~= nil and not keeps_licenses(job_desc.licenses, names) then
		slurm.log_user("--qpu=%s: the job's QPU licenses come with --qpu and stay (%s)", raw,
			with_licenses("", names))
		slurm.log_info("slurm-qpu: uid %u may not drop the QPU licenses of a --qpu=%s job",
			modify_uid, raw)
		-- scontrol update shows the code's text, not log_user's (Slurm 22.05)
		return slurm.ESLURM_INVALID_LICENSES or slurm.ERROR
	end
	if job_desc.partition == nil and job_desc.account == nil and job_desc.qos == nil then
		return slurm.SUCCESS
	end
	local why = check(names, split(job_desc.partition or job_rec.partition),
		job_desc.account or job_rec.account, job_desc.qos or job_rec.qos)
	if why ~= nil then
		slurm.log_user("--qpu=%s: change refused: %s", raw, why)
		slurm.log_info("slurm-qpu: refused a change by uid %u: %s", modify_uid, why)
		return slurm.ESLURM_ACCESS_DENIED or slurm.ERROR
	end
	return slurm.SUCCESS
end
