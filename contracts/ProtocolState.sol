// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title ProtocolState (sequencer-compatible subset)
/// @notice A self-contained stand-in for Powerloom's protocol state contract, for local chains and
///         tests. It keeps the exact signatures the sequencer speaks (PROTOCOL.md §3, §4, §7):
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

    // ------------------------------------------------------------------ storage
    struct Market {
        bool registered;
        uint256 epochSize;
        uint256 snapshotSubmissionWindow;
        uint256 batchSubmissionWindow;
        uint256 currentEpochId;
        uint256 lastEpochEnd;
    }

    struct Epoch {
        uint256 begin;
        uint256 end;
        uint256 timestamp;
        uint256 releaseBlock;
        bool batchSubmissionsEnded;
        // The market's windows when the epoch was released: its deadlines, whatever
        // `updateSubmissionWindows` does afterwards. Packed with the flag into one slot (windows
        // are bounded to uint64 at registration and update), so a release costs one more SSTORE.
        uint64 snapshotSubmissionWindow;
        uint64 batchSubmissionWindow;
    }

    // Packed into two slots: a batch record costs two SSTOREs.
    struct Batch {
        uint64 epochId; // 0 = never submitted (epoch ids start at 1)
        uint64 blockNumber;
        bool delayed;
        bytes32 finalizedCidsRootHash;
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
    /// @notice The address `transferOwnership` named, until it accepts (zero: none). Declared last
    ///         so that the earlier storage slots keep their places.
    address public pendingOwner;

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

    /// @notice Register a data market. Windows are in blocks; the epoch size is in blocks too.
    function registerDataMarket(
        address dataMarket,
        uint256 epochSize,
        uint256 snapshotWindow,
        uint256 batchWindow
    ) external onlyOwner {
        if (dataMarket == address(0)) revert ZeroAddress();
        if (markets[dataMarket].registered) revert MarketAlreadyRegistered(dataMarket);
        if (epochSize == 0) revert InvalidEpochSize(epochSize);
        _checkWindows(snapshotWindow, batchWindow);
        Market storage m = markets[dataMarket];
        m.registered = true;
        m.epochSize = epochSize;
        m.snapshotSubmissionWindow = snapshotWindow;
        m.batchSubmissionWindow = batchWindow;
        emit DataMarketRegistered(dataMarket, epochSize, snapshotWindow, batchWindow);
    }

    /// @notice New windows for epochs released from now on; released epochs keep theirs
    ///         (`epochWindows`).
    function updateSubmissionWindows(address dataMarket, uint256 snapshotWindow, uint256 batchWindow)
        external
        onlyOwner
        knownMarket(dataMarket)
    {
        _checkWindows(snapshotWindow, batchWindow);
        markets[dataMarket].snapshotSubmissionWindow = snapshotWindow;
        markets[dataMarket].batchSubmissionWindow = batchWindow;
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
    ///         contiguous with the previous epoch (the first one may begin anywhere).
    function releaseEpoch(address dataMarket, uint256 begin, uint256 end)
        external
        knownMarket(dataMarket)
        returns (uint256 epochId)
    {
        if (!epochManagers[dataMarket][msg.sender]) revert NotEpochManager(msg.sender);
        Market storage m = markets[dataMarket];
        uint256 expectedBegin = m.currentEpochId == 0 ? begin : m.lastEpochEnd + 1;
        if (begin != expectedBegin || end < begin || end - begin + 1 != m.epochSize) {
            revert InvalidEpochRange(begin, end, expectedBegin);
        }
        epochId = ++m.currentEpochId;
        m.lastEpochEnd = end;
        // Both fit: `_checkWindows` bounds them whenever they are set.
        epochs[dataMarket][epochId] = Epoch(
            begin,
            end,
            block.timestamp,
            block.number,
            false,
            uint64(m.snapshotSubmissionWindow),
            uint64(m.batchSubmissionWindow)
        );
        emit EpochReleased(dataMarket, epochId, begin, end, block.timestamp);
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
        uint256 expectedBegin = m.lastEpochEnd + 1;
        if (m.currentEpochId == 0 || newBegin <= expectedBegin || (newBegin - expectedBegin) % m.epochSize != 0) {
            revert InvalidSkip(newBegin, expectedBegin);
        }
        m.lastEpochEnd = newBegin - 1;
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

        bool delayed = block.number > e.releaseBlock + e.batchSubmissionWindow;
        _markProjects(projects[dataMarket][epochId], epochBatches[dataMarket][epochId].length + 1, epochId, projectIds, snapshotCids);
        // Both fit: epochId <= currentEpochId (a counter) and block numbers stay far below 2^64.
        b.epochId = uint64(epochId);
        b.blockNumber = uint64(block.number);
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

    /// @notice releaseBlock == 0 means the epoch was never released.
    function epochInfo(address dataMarket, uint256 epochId)
        external
        view
        returns (uint256 begin, uint256 end, uint256 timestamp, uint256 releaseBlock, bool batchSubmissionsEnded)
    {
        Epoch storage e = epochs[dataMarket][epochId];
        return (e.begin, e.end, e.timestamp, e.releaseBlock, e.batchSubmissionsEnded);
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
