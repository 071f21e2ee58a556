// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title ProtocolState (sequencer-compatible subset)
/// @notice A self-contained stand-in for Powerloom's protocol state contract, for local chains and
///         tests. It keeps the exact signatures the sequencer speaks (docs/protocol.md §3, §4, §7):
///         `EpochReleased`, `submitSubmissionBatch` (0xcf396cbf), `endBatchSubmissions` (0x6ee55d73),
///         `SnapshotBatchSubmitted`, `DelayedBatchSubmitted`, `BatchSubmissionsCompleted`,
///         `slotSnapshotterMapping(uint256)`, `snapshotSubmissionWindow(address)` and
///         `batchSubmissionWindow(address)`. Data markets are plain addresses registered here (the
///         real protocol deploys one contract per market; the sequencer only ever uses the address).
///         All windows are in BLOCKS.
contract ProtocolState {
    // ------------------------------------------------------------------ errors
    error NotOwner(address caller);
    error NotSequencer(address caller);
    error NotEpochManager(address caller);
    error ZeroAddress();
    error UnknownMarket(address dataMarket);
    error MarketAlreadyRegistered(address dataMarket);
    error InvalidEpochSize(uint256 epochSize);
    error InvalidEpochRange(uint256 begin, uint256 end, uint256 expectedBegin);
    error EpochNotReleased(uint256 epochId);
    error EpochEnded(uint256 epochId);
    error LengthMismatch(uint256 projectIds, uint256 snapshotCids);
    error EmptyBatch();
    error EmptyBatchCid();
    error BatchAlreadySubmitted(string batchCid);
    error ProjectAlreadySubmitted(string projectId, uint256 epochId);
    error InvalidSkip(uint256 newBegin, uint256 expectedBegin);
    error NoBatchSubmitted(uint256 epochId);
    error NotPendingOwner(address caller);
    error InvalidWindow(uint256 snapshotWindow, uint256 batchWindow);
    error InvalidSourceChain(uint256 sourceChainId);
    error InvalidBlockTime(uint256 sourceChainBlockTime);
    error InvalidDaySize(uint256 daySize, uint256 epochDuration);
    error InvalidDailyQuota(uint256 dailySnapshotQuota);
    error DayNotEnded(uint256 day, uint256 currentDay);
    error RewardsAlreadyRecorded(uint256 slotId, uint256 day);

    // ------------------------------------------------------------------ events
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    /// @notice `transferOwnership` named `newOwner`; ownership moves when it calls `acceptOwnership`.
    event OwnershipTransferStarted(address indexed previousOwner, address indexed newOwner);
    event DataMarketRegistered(
        address indexed dataMarketAddress,
        uint256 epochSize,
        uint256 snapshotSubmissionWindow,
        uint256 batchSubmissionWindow
    );
    event SubmissionWindowsUpdated(
        address indexed dataMarketAddress, uint256 snapshotSubmissionWindow, uint256 batchSubmissionWindow
    );
    event SequencerUpdated(address indexed dataMarketAddress, address indexed sequencer, bool allowed);
    event EpochManagerUpdated(address indexed dataMarketAddress, address indexed epochManager, bool allowed);
    event SnapshotterAddressChanged(
        uint256 indexed slotId, address indexed snapshotterAddress, address oldSnapshotterAddress
    );
    event FlaggedSnapshotterUpdated(address indexed dataMarketAddress, address indexed snapshotter, bool flagged);
    event EpochReleased(
        address indexed dataMarketAddress, uint256 indexed epochId, uint256 begin, uint256 end, uint256 timestamp
    );
    event SnapshotBatchSubmitted(
        address indexed dataMarketAddress, string batchCid, uint256 indexed epochId, uint256 timestamp
    );
    event DelayedBatchSubmitted(
        address indexed dataMarketAddress, string batchCid, uint256 indexed epochId, uint256 timestamp
    );
    event BatchSubmissionsCompleted(address indexed dataMarketAddress, uint256 indexed epochId, uint256 timestamp);
    /// @notice Blocks [fromBegin, toBegin - 1] of the market's source chain were skipped: no epoch
    ///         covers them, ever. The next released epoch begins at toBegin.
    event EpochsSkipped(address indexed dataMarketAddress, uint256 fromBegin, uint256 toBegin, uint256 timestamp);
    /// @notice Powerloom's day event: emitted by the `releaseEpoch` that opens day `dayId` (before
    ///         that epoch's `EpochReleased`, in the same transaction).
    event DayStartedEvent(address indexed dataMarketAddress, uint256 dayId, uint256 timestamp);
    /// @notice Powerloom's reward event: `slotId` met the market's `dailySnapshotQuota` on `dayId`.
    event DailyTaskCompletedEvent(
        address indexed dataMarketAddress, address snapshotterAddress, uint256 slotId, uint256 dayId, uint256 timestamp
    );
    /// @notice The market's settings, at registration and at every change (`epochsInADay` derived).
    event MarketSettingsUpdated(
        address indexed dataMarketAddress,
        uint256 epochSize,
        uint256 sourceChainId,
        uint256 sourceChainBlockTime,
        uint256 daySize,
        uint256 epochsInADay,
        uint256 dailyQuota
    );

    // ------------------------------------------------------------------ storage
    // Packed so that `releaseEpoch` reads two storage slots of the market and writes one (two
    // on the release that starts a day), and writes two slots for the epoch. Block numbers,
    // timestamps, epoch ids, day numbers and windows are held in 64 bits: `releaseEpoch` and
    // the window setters refuse anything larger, and nothing real comes near 2^64.
    struct Market {
        // slot 0: read and written by every release
        bool registered;
        uint8 epochSize; // blocks per epoch, 1..255 (Powerloom's EPOCH_SIZE is a uint8)
        uint64 currentEpochId;
        uint64 lastEpochEnd;
        uint64 epochsInADay; // daySize / (sourceChainBlockTime * epochSize), >= 1
        // slot 1: read by every release, written when a day starts and by the window setter
        uint64 snapshotSubmissionWindow;
        uint64 batchSubmissionWindow;
        uint64 dayCounter; // starts at 1
        uint64 dayStartEpochId; // first epoch id of the current day
        // settings read by views and `updateRewards` only
        uint256 sourceChainId;
        uint256 sourceChainBlockTime; // seconds * 10_000
        uint256 daySize; // seconds * 10_000 (Powerloom: 864_000_000 = 24 h)
        uint256 dailySnapshotQuota;
    }

    struct Epoch {
        // slot 0
        uint64 begin;
        uint64 end;
        uint64 timestamp;
        uint64 releaseBlock; // 0 = never released
        // slot 1: the market's windows when the epoch was released (its deadlines, whatever
        // `updateSubmissionWindows` does afterwards), its day, and the end flag.
        bool batchSubmissionsEnded;
        uint64 snapshotSubmissionWindow;
        uint64 batchSubmissionWindow;
        uint64 day;
    }

    // Packed into two slots: a batch record costs two SSTOREs.
    struct Batch {
        uint64 epochId; // 0 = never submitted (epoch ids start at 1)
        uint64 blockNumber;
        uint64 timestamp;
        bool delayed;
        bytes32 finalizedCidsRootHash;
    }

    /// Powerloom's snapshot status (`snapshotStatus`, `maxSnapshotsCid`): a uint8 in the ABI.
    enum SnapshotStatus {
        PENDING,
        FINALIZED
    }

    struct ProjectStatus {
        string snapshotCid;
        uint256 batchNumber; // 1-based position of its batch in the epoch batch list; 0 = not submitted
    }

    address public owner;
    mapping(address => Market) private markets;
    mapping(address => mapping(address => bool)) private sequencers;
    mapping(address => mapping(address => bool)) private epochManagers;
    mapping(uint256 => address) private slots;
    mapping(address => mapping(address => bool)) private flagged;
    mapping(address => mapping(uint256 => Epoch)) private epochs;
    mapping(address => mapping(uint256 => string[])) private epochBatches;
    mapping(address => mapping(string => Batch)) private batches;
    mapping(address => mapping(uint256 => mapping(string => ProjectStatus))) private projects;
    /// @notice The address `transferOwnership` named, until it accepts (zero: none).
    address public pendingOwner;
    /// Slots each address is the snapshotter of (`allSnapshotters`).
    mapping(address => uint256) private snapshotterSlotCount;
    /// Highest slot id ever given a snapshotter (`getTotalNodeCount`).
    uint256 private highestSlotId;
    /// Rewards bookkeeping, two bits per slot: bit 2k = recorded, bit 2k+1 = quota met, for slot
    /// id 128 * word + k. One bulk call for consecutive slot ids touches one word per 128 slots.
    mapping(address => mapping(uint256 => mapping(uint256 => uint256))) private rewardBits;
    /// Eligible nodes of a day as the sequencer reported them (first non-zero report wins).
    mapping(address => mapping(uint256 => uint256)) private dayEligibleNodes;

    constructor() {
        owner = msg.sender;
        emit OwnershipTransferred(address(0), msg.sender);
    }

    // ------------------------------------------------------------------ modifiers
    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    modifier knownMarket(address dataMarket) {
        if (!markets[dataMarket].registered) revert UnknownMarket(dataMarket);
        _;
    }

    modifier onlySequencer(address dataMarket) {
        if (!sequencers[dataMarket][msg.sender]) revert NotSequencer(msg.sender);
        _;
    }

    // ------------------------------------------------------------------ administration (owner)
    /// @notice Step one of two: name the next owner. Nothing changes hands until `newOwner` calls
    ///         `acceptOwnership`, so a mistyped address cannot take the contract out of reach; a
    ///         later call replaces the pending owner (the current owner's own address cancels).
    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        pendingOwner = newOwner;
        emit OwnershipTransferStarted(owner, newOwner);
    }

    /// @notice Step two: the pending owner takes ownership. Anyone else: `NotPendingOwner`.
    function acceptOwnership() external {
        if (msg.sender != pendingOwner) revert NotPendingOwner(msg.sender);
        emit OwnershipTransferred(owner, msg.sender);
        owner = msg.sender;
        pendingOwner = address(0);
    }

    /// @notice Register a data market with its settings. Windows and the epoch size are in
    ///         blocks (epoch size 1..255, a uint8 as in Powerloom); `sourceChainBlockTime` and
    ///         `daySize` are seconds * 10_000 (Powerloom's units: 12 s = 120_000, 24 h =
    ///         864_000_000); `epochsInADay` is derived, daySize / (sourceChainBlockTime * epochSize),
    ///         and must be at least 1. Day 1 starts with epoch 1.
    function registerDataMarket(
        address dataMarket,
        uint256 epochSize,
        uint256 snapshotWindow,
        uint256 batchWindow,
        uint256 sourceChainId,
        uint256 sourceChainBlockTime,
        uint256 daySize,
        uint256 dailyQuota
    ) external onlyOwner {
        if (dataMarket == address(0)) revert ZeroAddress();
        if (markets[dataMarket].registered) revert MarketAlreadyRegistered(dataMarket);
        _checkWindows(snapshotWindow, batchWindow);
        Market storage m = markets[dataMarket];
        m.registered = true;
        m.snapshotSubmissionWindow = uint64(snapshotWindow);
        m.batchSubmissionWindow = uint64(batchWindow);
        m.dayCounter = 1;
        m.dayStartEpochId = 1;
        _applySettings(dataMarket, m, epochSize, sourceChainId, sourceChainBlockTime, daySize, dailyQuota);
        emit DataMarketRegistered(dataMarket, epochSize, snapshotWindow, batchWindow);
    }

    /// @notice Change a market's settings (owner). A new epoch size applies from the next
    ///         release; a new `epochsInADay` to the current day (counted from its first epoch).
    function updateMarketSettings(
        address dataMarket,
        uint256 epochSize,
        uint256 sourceChainId,
        uint256 sourceChainBlockTime,
        uint256 daySize,
        uint256 dailyQuota
    ) external onlyOwner knownMarket(dataMarket) {
        _applySettings(
            dataMarket, markets[dataMarket], epochSize, sourceChainId, sourceChainBlockTime, daySize, dailyQuota
        );
    }

    function _applySettings(
        address dataMarket,
        Market storage m,
        uint256 epochSize,
        uint256 sourceChainId,
        uint256 sourceChainBlockTime,
        uint256 daySize,
        uint256 dailyQuota
    ) private {
        if (epochSize == 0 || epochSize > type(uint8).max) revert InvalidEpochSize(epochSize);
        if (sourceChainId == 0) revert InvalidSourceChain(sourceChainId);
        if (sourceChainBlockTime == 0 || sourceChainBlockTime > type(uint64).max) {
            revert InvalidBlockTime(sourceChainBlockTime);
        }
        // Both bounded above, so the product cannot overflow.
        uint256 epochDuration = sourceChainBlockTime * epochSize;
        uint256 epochsPerDay = daySize / epochDuration;
        if (epochsPerDay == 0 || epochsPerDay > type(uint64).max) revert InvalidDaySize(daySize, epochDuration);
        if (dailyQuota == 0) revert InvalidDailyQuota(dailyQuota);
        m.epochSize = uint8(epochSize);
        m.epochsInADay = uint64(epochsPerDay);
        m.sourceChainId = sourceChainId;
        m.sourceChainBlockTime = sourceChainBlockTime;
        m.daySize = daySize;
        m.dailySnapshotQuota = dailyQuota;
        emit MarketSettingsUpdated(
            dataMarket, epochSize, sourceChainId, sourceChainBlockTime, daySize, epochsPerDay, dailyQuota
        );
    }

    /// @notice New windows for epochs released from now on; released epochs keep theirs
    ///         (`epochWindows`).
    function updateSubmissionWindows(address dataMarket, uint256 snapshotWindow, uint256 batchWindow)
        external
        onlyOwner
        knownMarket(dataMarket)
    {
        _checkWindows(snapshotWindow, batchWindow);
        markets[dataMarket].snapshotSubmissionWindow = uint64(snapshotWindow);
        markets[dataMarket].batchSubmissionWindow = uint64(batchWindow);
        emit SubmissionWindowsUpdated(dataMarket, snapshotWindow, batchWindow);
    }

    /// @notice Windows are block counts; beyond uint64 they are no deadline at all (and the
    ///         sequencer reads them as u64).
    function _checkWindows(uint256 snapshotWindow, uint256 batchWindow) private pure {
        if (snapshotWindow > type(uint64).max || batchWindow > type(uint64).max) {
            revert InvalidWindow(snapshotWindow, batchWindow);
        }
    }

    function setSequencer(address dataMarket, address sequencer, bool allowed)
        external
        onlyOwner
        knownMarket(dataMarket)
    {
        if (sequencer == address(0)) revert ZeroAddress();
        sequencers[dataMarket][sequencer] = allowed;
        emit SequencerUpdated(dataMarket, sequencer, allowed);
    }

    function setEpochManager(address dataMarket, address epochManager, bool allowed)
        external
        onlyOwner
        knownMarket(dataMarket)
    {
        if (epochManager == address(0)) revert ZeroAddress();
        epochManagers[dataMarket][epochManager] = allowed;
        emit EpochManagerUpdated(dataMarket, epochManager, allowed);
    }

    /// @notice Assign (or clear, with address(0)) the snapshotter of one slot.
    function assignSnapshotterToSlot(uint256 slotId, address snapshotter) external onlyOwner {
        _assign(slotId, snapshotter);
    }

    function assignSnapshotterToSlotBulk(uint256[] calldata slotIds, address[] calldata snapshotters)
        external
        onlyOwner
    {
        if (slotIds.length != snapshotters.length) revert LengthMismatch(slotIds.length, snapshotters.length);
        for (uint256 i = 0; i < slotIds.length; i++) {
            _assign(slotIds[i], snapshotters[i]);
        }
    }

    function _assign(uint256 slotId, address snapshotter) private {
        address old = slots[slotId];
        if (old == snapshotter) return;
        slots[slotId] = snapshotter;
        if (old != address(0)) snapshotterSlotCount[old] -= 1;
        if (snapshotter != address(0)) {
            snapshotterSlotCount[snapshotter] += 1;
            if (slotId > highestSlotId) highestSlotId = slotId;
        }
        emit SnapshotterAddressChanged(slotId, snapshotter, old);
    }

    function setFlaggedSnapshotters(address dataMarket, address[] calldata snapshotters, bool flag)
        external
        onlyOwner
        knownMarket(dataMarket)
    {
        for (uint256 i = 0; i < snapshotters.length; i++) {
            if (flagged[dataMarket][snapshotters[i]] != flag) {
                flagged[dataMarket][snapshotters[i]] = flag;
                emit FlaggedSnapshotterUpdated(dataMarket, snapshotters[i], flag);
            }
        }
    }

    // ------------------------------------------------------------------ epoch manager
    /// @notice Release the next epoch of a market: blocks [begin, end], exactly epochSize long and
    ///         contiguous with the previous epoch (the first one may begin anywhere). Once
    ///         `epochsInADay` epochs of the current day are out, the release starts the next day
    ///         first (`dayCounter` + 1, `DayStartedEvent`, then `EpochReleased`, as Powerloom's
    ///         contract orders them): the day rolls over inside the release's own transaction, so
    ///         it happens exactly once whoever releases, however often a manager restarts.
    function releaseEpoch(address dataMarket, uint256 begin, uint256 end)
        external
        knownMarket(dataMarket)
        returns (uint256 epochId)
    {
        if (!epochManagers[dataMarket][msg.sender]) revert NotEpochManager(msg.sender);
        Market storage m = markets[dataMarket];
        uint256 expectedBegin = m.currentEpochId == 0 ? begin : uint256(m.lastEpochEnd) + 1;
        if (begin != expectedBegin || end < begin || end - begin + 1 != m.epochSize || end > type(uint64).max) {
            revert InvalidEpochRange(begin, end, expectedBegin);
        }
        uint64 id = m.currentEpochId + 1;
        m.currentEpochId = id;
        m.lastEpochEnd = uint64(end);
        uint64 day = m.dayCounter;
        if (uint256(id) >= uint256(m.dayStartEpochId) + m.epochsInADay) {
            day += 1;
            m.dayCounter = day;
            m.dayStartEpochId = id;
            emit DayStartedEvent(dataMarket, day, block.timestamp);
        }
        // begin <= end < 2^64 (checked above); timestamps and block numbers stay far below 2^64.
        epochs[dataMarket][id] = Epoch(
            uint64(begin),
            uint64(end),
            uint64(block.timestamp),
            uint64(block.number),
            false,
            m.snapshotSubmissionWindow,
            m.batchSubmissionWindow,
            day
        );
        emit EpochReleased(dataMarket, id, begin, end, block.timestamp);
        return id;
    }

    /// @notice Skip whole epochs of a market: the next epoch begins at `newBegin` instead of
    ///         `lastEpochEnd + 1`. For an epoch manager that fell behind and catches up to the head
    ///         rather than releasing every missed epoch. Owner or EPOCH MANAGER of the market; only
    ///         after a first release (before it, the first `releaseEpoch` may begin anywhere); the
    ///         skipped span is a positive multiple of `epochSize`, so epochs stay on their grid.
    ///         Epoch ids stay consecutive: skipped blocks get no id. Emits `EpochsSkipped`.
    function skipEpochs(address dataMarket, uint256 newBegin) external knownMarket(dataMarket) {
        if (msg.sender != owner && !epochManagers[dataMarket][msg.sender]) revert NotEpochManager(msg.sender);
        Market storage m = markets[dataMarket];
        uint256 expectedBegin = uint256(m.lastEpochEnd) + 1;
        if (
            m.currentEpochId == 0 || newBegin <= expectedBegin || (newBegin - expectedBegin) % m.epochSize != 0
                || newBegin - 1 > type(uint64).max
        ) {
            revert InvalidSkip(newBegin, expectedBegin);
        }
        m.lastEpochEnd = uint64(newBegin - 1);
        emit EpochsSkipped(dataMarket, expectedBegin, newBegin, block.timestamp);
    }

    // ------------------------------------------------------------------ sequencer
    /// @notice Anchor one finalized batch of an epoch. Each project may be anchored once per epoch,
    ///         in time or delayed; a batch CID once per market. Past the epoch's
    ///         `batchSubmissionWindow` (the one in effect at its release) the batch is recorded as
    ///         delayed: listed with its root, its projects claimed (a later batch of the epoch may
    ///         not anchor them again) but not reported by `projectStatus`, and
    ///         `DelayedBatchSubmitted` is emitted instead of `SnapshotBatchSubmitted`.
    function submitSubmissionBatch(
        address dataMarket,
        string calldata batchCid,
        uint256 epochId,
        string[] calldata projectIds,
        string[] calldata snapshotCids,
        bytes32 finalizedCidsRootHash
    ) external knownMarket(dataMarket) onlySequencer(dataMarket) {
        Epoch storage e = epochs[dataMarket][epochId];
        if (e.releaseBlock == 0) revert EpochNotReleased(epochId);
        if (e.batchSubmissionsEnded) revert EpochEnded(epochId);
        if (projectIds.length != snapshotCids.length) revert LengthMismatch(projectIds.length, snapshotCids.length);
        if (projectIds.length == 0) revert EmptyBatch();
        if (bytes(batchCid).length == 0) revert EmptyBatchCid();
        Batch storage b = batches[dataMarket][batchCid];
        if (b.epochId != 0) revert BatchAlreadySubmitted(batchCid);

        bool delayed = block.number > uint256(e.releaseBlock) + e.batchSubmissionWindow;
        _markProjects(projects[dataMarket][epochId], epochBatches[dataMarket][epochId].length + 1, epochId, projectIds, snapshotCids);
        // Both fit: epochId <= currentEpochId (a counter) and block numbers stay far below 2^64.
        b.epochId = uint64(epochId);
        b.blockNumber = uint64(block.number);
        b.timestamp = uint64(block.timestamp);
        b.delayed = delayed;
        b.finalizedCidsRootHash = finalizedCidsRootHash;
        epochBatches[dataMarket][epochId].push(batchCid);
        if (delayed) {
            emit DelayedBatchSubmitted(dataMarket, batchCid, epochId, block.timestamp);
        } else {
            emit SnapshotBatchSubmitted(dataMarket, batchCid, epochId, block.timestamp);
        }
    }

    function _markProjects(
        mapping(string => ProjectStatus) storage status,
        uint256 batchNumber,
        uint256 epochId,
        string[] calldata projectIds,
        string[] calldata snapshotCids
    ) private {
        for (uint256 i = 0; i < projectIds.length; i++) {
            ProjectStatus storage p = status[projectIds[i]];
            if (p.batchNumber != 0) revert ProjectAlreadySubmitted(projectIds[i], epochId);
            p.snapshotCid = snapshotCids[i];
            p.batchNumber = batchNumber;
        }
    }

    /// @notice Close an epoch's batch submissions (once, and only after at least one batch, in
    ///         time or delayed: an epoch with nothing anchored stays open, `NoBatchSubmitted`).
    function endBatchSubmissions(address dataMarket, uint256 epochId)
        external
        knownMarket(dataMarket)
        onlySequencer(dataMarket)
    {
        Epoch storage e = epochs[dataMarket][epochId];
        if (e.releaseBlock == 0) revert EpochNotReleased(epochId);
        if (e.batchSubmissionsEnded) revert EpochEnded(epochId);
        if (epochBatches[dataMarket][epochId].length == 0) revert NoBatchSubmitted(epochId);
        e.batchSubmissionsEnded = true;
        emit BatchSubmissionsCompleted(dataMarket, epochId, block.timestamp);
    }

    /// @notice Powerloom's bulk rewards call (its selector and argument order): records, once per
    ///         (market, slot, day), how many of a slot's submissions made it into the finalized
    ///         batches of an ended day, and emits `DailyTaskCompletedEvent` (with the slot's
    ///         current snapshotter) for each slot that met the market's `dailySnapshotQuota`.
    ///         SEQUENCER of the market; only for a day that has ended (1 <= day < dayCounter,
    ///         else `DayNotEnded`). A slot already recorded for that day reverts the whole call
    ///         (`RewardsAlreadyRecorded`): a sender reads `rewardsRecorded` first and sends what is
    ///         missing. `eligibleNodes` (Powerloom: the slots sharing the day's reward pool) is
    ///         kept per day, the first non-zero report wins; this contract pays out no tokens.
    function updateRewards(
        address dataMarket,
        uint256[] calldata slotIds,
        uint256[] calldata submissionsList,
        uint256 day,
        uint256 eligibleNodes
    ) external knownMarket(dataMarket) onlySequencer(dataMarket) {
        if (slotIds.length != submissionsList.length) revert LengthMismatch(slotIds.length, submissionsList.length);
        if (slotIds.length == 0) revert EmptyBatch();
        Market storage m = markets[dataMarket];
        uint256 current = m.dayCounter;
        if (day == 0 || day >= current) revert DayNotEnded(day, current);
        if (eligibleNodes != 0 && dayEligibleNodes[dataMarket][day] == 0) {
            dayEligibleNodes[dataMarket][day] = eligibleNodes;
        }
        uint256 quota = m.dailySnapshotQuota;
        mapping(uint256 => uint256) storage bits = rewardBits[dataMarket][day];
        for (uint256 i = 0; i < slotIds.length; i++) {
            uint256 slotId = slotIds[i];
            uint256 word = slotId >> 7;
            uint256 shift = (slotId & 127) << 1;
            uint256 w = bits[word];
            if ((w >> shift) & 1 != 0) revert RewardsAlreadyRecorded(slotId, day);
            bool met = submissionsList[i] >= quota;
            bits[word] = w | ((met ? uint256(3) : uint256(1)) << shift);
            if (met) emit DailyTaskCompletedEvent(dataMarket, slots[slotId], slotId, day, block.timestamp);
        }
    }

    // ------------------------------------------------------------------ views Powerloom's node reads
    // Same selectors and return shapes as Powerloom's ProtocolState (docs/protocol.md section 9).
    // Market-scoped settings revert `UnknownMarket` for an unregistered market, as a call into a
    // missing market contract reverts there: a misconfigured node stops at start.

    /// @notice Whether `addr` is the snapshotter of at least one slot.
    function allSnapshotters(address addr) external view returns (bool) {
        return snapshotterSlotCount[addr] != 0;
    }

    /// @notice The highest slot id ever given a snapshotter: slots are numbered from 1, so
    ///         [1, getTotalNodeCount()] covers every slot (the node's slot-based work split).
    function getTotalNodeCount() external view returns (uint256) {
        return highestSlotId;
    }

    function EPOCH_SIZE(address dataMarket) external view knownMarket(dataMarket) returns (uint8) {
        return markets[dataMarket].epochSize;
    }

    function SOURCE_CHAIN_ID(address dataMarket) external view knownMarket(dataMarket) returns (uint256) {
        return markets[dataMarket].sourceChainId;
    }

    /// @notice Seconds * 10_000.
    function SOURCE_CHAIN_BLOCK_TIME(address dataMarket) external view knownMarket(dataMarket) returns (uint256) {
        return markets[dataMarket].sourceChainBlockTime;
    }

    /// @notice Seconds * 10_000.
    function DAY_SIZE(address dataMarket) external view knownMarket(dataMarket) returns (uint256) {
        return markets[dataMarket].daySize;
    }

    function epochsInADay(address dataMarket) external view knownMarket(dataMarket) returns (uint256) {
        return markets[dataMarket].epochsInADay;
    }

    function dailySnapshotQuota(address dataMarket) external view knownMarket(dataMarket) returns (uint256) {
        return markets[dataMarket].dailySnapshotQuota;
    }

    function dayCounter(address dataMarket) external view knownMarket(dataMarket) returns (uint256) {
        return markets[dataMarket].dayCounter;
    }

    /// @notice Powerloom's 3-value epoch record: release timestamp, release block, last block.
    ///         Zeros for an epoch never released. The full record is `epochDetails`.
    function epochInfo(address dataMarket, uint256 epochId)
        external
        view
        returns (uint256 timestamp, uint256 blocknumber, uint256 epochEnd)
    {
        Epoch storage e = epochs[dataMarket][epochId];
        return (e.timestamp, e.releaseBlock, e.end);
    }

    /// @notice The last released epoch (zeros before the first release).
    function currentEpoch(address dataMarket)
        external
        view
        knownMarket(dataMarket)
        returns (uint256 begin, uint256 end, uint256 epochId)
    {
        uint256 id = markets[dataMarket].currentEpochId;
        Epoch storage e = epochs[dataMarket][id];
        return (e.begin, e.end, id);
    }

    /// @notice FINALIZED with the CID and the anchoring block's timestamp when the project was
    ///         anchored in time for the epoch (no validators here: the sequencer's anchor is final);
    ///         PENDING, "", 0 otherwise (delayed batches included, as Powerloom records nothing for them).
    function snapshotStatus(address dataMarket, string calldata projectId, uint256 epochId)
        external
        view
        returns (SnapshotStatus status, string memory snapshotCid, uint256 timestamp)
    {
        ProjectStatus storage p = projects[dataMarket][epochId][projectId];
        if (p.batchNumber == 0) return (SnapshotStatus.PENDING, "", 0);
        Batch storage b = batches[dataMarket][epochBatches[dataMarket][epochId][p.batchNumber - 1]];
        if (b.delayed) return (SnapshotStatus.PENDING, "", 0);
        return (SnapshotStatus.FINALIZED, p.snapshotCid, b.timestamp);
    }

    /// @notice The finalized CID of (market, project, epoch) and its status (see `snapshotStatus`).
    function maxSnapshotsCid(address dataMarket, string calldata projectId, uint256 epochId)
        external
        view
        returns (string memory, SnapshotStatus)
    {
        ProjectStatus storage p = projects[dataMarket][epochId][projectId];
        if (p.batchNumber == 0) return ("", SnapshotStatus.PENDING);
        Batch storage b = batches[dataMarket][epochBatches[dataMarket][epochId][p.batchNumber - 1]];
        if (b.delayed) return ("", SnapshotStatus.PENDING);
        return (p.snapshotCid, SnapshotStatus.FINALIZED);
    }

    /// @notice Whether `slotId` met the daily quota on `day` (recorded by `updateRewards`).
    function checkSlotTaskStatusForDay(address dataMarket, uint256 slotId, uint256 day) external view returns (bool) {
        return (rewardBits[dataMarket][day][slotId >> 7] >> (((slotId & 127) << 1) + 1)) & 1 != 0;
    }

    // ------------------------------------------------------------------ views
    function slotSnapshotterMapping(uint256 slotId) external view returns (address) {
        return slots[slotId];
    }

    function snapshotSubmissionWindow(address dataMarket) external view knownMarket(dataMarket) returns (uint256) {
        return markets[dataMarket].snapshotSubmissionWindow;
    }

    function batchSubmissionWindow(address dataMarket) external view knownMarket(dataMarket) returns (uint256) {
        return markets[dataMarket].batchSubmissionWindow;
    }

    function dataMarketInfo(address dataMarket)
        external
        view
        returns (
            bool registered,
            uint256 epochSize,
            uint256 snapshotWindow,
            uint256 batchWindow,
            uint256 currentEpochId,
            uint256 lastEpochEnd
        )
    {
        Market storage m = markets[dataMarket];
        return (
            m.registered,
            m.epochSize,
            m.snapshotSubmissionWindow,
            m.batchSubmissionWindow,
            m.currentEpochId,
            m.lastEpochEnd
        );
    }

    function isSequencer(address dataMarket, address account) external view returns (bool) {
        return sequencers[dataMarket][account];
    }

    function isEpochManager(address dataMarket, address account) external view returns (bool) {
        return epochManagers[dataMarket][account];
    }

    function isFlagged(address dataMarket, address snapshotter) external view returns (bool) {
        return flagged[dataMarket][snapshotter];
    }

    /// @notice Everything recorded for an epoch (releaseBlock == 0: never released). Our own view;
    ///         `epochInfo` answers in Powerloom's shape.
    function epochDetails(address dataMarket, uint256 epochId)
        external
        view
        returns (
            uint256 begin,
            uint256 end,
            uint256 timestamp,
            uint256 releaseBlock,
            bool batchSubmissionsEnded,
            uint256 day
        )
    {
        Epoch storage e = epochs[dataMarket][epochId];
        return (e.begin, e.end, e.timestamp, e.releaseBlock, e.batchSubmissionsEnded, e.day);
    }

    /// @notice A market's settings and day state in one call.
    function marketSettings(address dataMarket)
        external
        view
        knownMarket(dataMarket)
        returns (
            uint256 epochSize,
            uint256 sourceChainId,
            uint256 sourceChainBlockTime,
            uint256 daySize,
            uint256 epochsPerDay,
            uint256 dailyQuota,
            uint256 currentDay,
            uint256 dayStartEpochId
        )
    {
        Market storage m = markets[dataMarket];
        return (
            m.epochSize,
            m.sourceChainId,
            m.sourceChainBlockTime,
            m.daySize,
            m.epochsInADay,
            m.dailySnapshotQuota,
            m.dayCounter,
            m.dayStartEpochId
        );
    }

    /// @notice For each of `slotIds`, whether `updateRewards` recorded it for `day`.
    function rewardsRecorded(address dataMarket, uint256 day, uint256[] calldata slotIds)
        external
        view
        returns (bool[] memory recorded)
    {
        recorded = new bool[](slotIds.length);
        mapping(uint256 => uint256) storage bits = rewardBits[dataMarket][day];
        for (uint256 i = 0; i < slotIds.length; i++) {
            recorded[i] = (bits[slotIds[i] >> 7] >> ((slotIds[i] & 127) << 1)) & 1 != 0;
        }
    }

    /// @notice Eligible nodes the sequencer reported for `day` (0: none reported).
    function eligibleNodesForDay(address dataMarket, uint256 day) external view returns (uint256) {
        return dayEligibleNodes[dataMarket][day];
    }

    /// @notice The windows an epoch was released under (its deadlines: snapshots until
    ///         `releaseBlock + snapshotWindow`, batches in time until `releaseBlock + batchWindow`).
    ///         `EpochNotReleased` for an epoch never released.
    function epochWindows(address dataMarket, uint256 epochId)
        external
        view
        returns (uint256 snapshotWindow, uint256 batchWindow)
    {
        Epoch storage e = epochs[dataMarket][epochId];
        if (e.releaseBlock == 0) revert EpochNotReleased(epochId);
        return (e.snapshotSubmissionWindow, e.batchSubmissionWindow);
    }

    function epochBatchSubmissionsEnded(address dataMarket, uint256 epochId) external view returns (bool) {
        return epochs[dataMarket][epochId].batchSubmissionsEnded;
    }

    /// @notice Batch CIDs anchored for an epoch, in submission order (delayed ones included).
    function epochBatchCids(address dataMarket, uint256 epochId) external view returns (string[] memory) {
        return epochBatches[dataMarket][epochId];
    }

    /// @notice What was recorded for a batch CID; epochId == 0 means never submitted.
    function batchInfo(address dataMarket, string calldata batchCid)
        external
        view
        returns (uint256 epochId, bytes32 finalizedCidsRootHash, uint256 blockNumber, bool delayed)
    {
        Batch storage b = batches[dataMarket][batchCid];
        return (b.epochId, b.finalizedCidsRootHash, b.blockNumber, b.delayed);
    }

    function batchCidRootHash(address dataMarket, string calldata batchCid) external view returns (bytes32) {
        return batches[dataMarket][batchCid].finalizedCidsRootHash;
    }

    /// @notice A project's status in an epoch: submitted iff its snapshot CID was anchored in
    ///         time (a delayed batch's projects are not submitted; see `projectAnchor`).
    function projectStatus(address dataMarket, string calldata projectId, uint256 epochId)
        external
        view
        returns (bool submitted, string memory snapshotCid, string memory batchCid)
    {
        ProjectStatus storage p = projects[dataMarket][epochId][projectId];
        if (p.batchNumber == 0) return (false, "", "");
        string storage cid = epochBatches[dataMarket][epochId][p.batchNumber - 1];
        if (batches[dataMarket][cid].delayed) return (false, "", "");
        return (true, p.snapshotCid, cid);
    }

    /// @notice Whether a project is anchored for an epoch at all (in time or delayed), and by
    ///         which batch: the once-per-project-per-epoch claim.
    function projectAnchor(address dataMarket, string calldata projectId, uint256 epochId)
        external
        view
        returns (bool anchored, bool delayed, string memory snapshotCid, string memory batchCid)
    {
        ProjectStatus storage p = projects[dataMarket][epochId][projectId];
        if (p.batchNumber == 0) return (false, false, "", "");
        string storage cid = epochBatches[dataMarket][epochId][p.batchNumber - 1];
        return (true, batches[dataMarket][cid].delayed, p.snapshotCid, cid);
    }
}
