// DynamoDB Streams records from pgoutput messages, pinned without a database: images per
// StreamViewType, keys of a delete under REPLICA IDENTITY DEFAULT, sequence numbers in
// commit order, the replica identity each view type needs.
import type { Pgoutput } from 'pg-logical-replication';
import { describe, expect, it } from 'vitest';
import { whyNotReplicaIdentity, type ChangeSource, type StreamViewType } from '../../../db/change-streams.ts';
import { attributeValue, changeRecord, changeSequenceNumber } from './change-streams.ts';

const relation = {
  tag: 'relation',
  relationOid: 1,
  schema: 'public',
  name: 'orders',
  replicaIdentity: 'full',
  keyColumns: ['id'],
  columns: [
    { name: 'id', flags: 1, typeOid: 23, typeMod: -1, typeSchema: null, typeName: 'int4', parser: (x: unknown) => x },
    { name: 'status', flags: 0, typeOid: 25, typeMod: -1, typeSchema: null, typeName: 'text', parser: (x: unknown) => x },
    { name: 'total', flags: 0, typeOid: 1700, typeMod: -1, typeSchema: null, typeName: 'numeric', parser: (x: unknown) => x },
  ],
} as Pgoutput.MessageRelation;

const source = (view: StreamViewType): ChangeSource => ({
  mappingId: '00000000-0000-4000-8000-000000000001',
  streamName: 'pg.public.orders.00000000',
  schemaName: 'public',
  tableName: 'orders',
  keyColumns: ['id'],
  streamViewType: view,
  slotName: 'ledger_cs_x',
  endpoint: null,
  publicationName: 'ledger_cs_x',
  ingestedLsn: '0/0',
});
const txn = { commitLsn: '0/16A0F10', commitTime: 1_764_547_200_123_456n, index: 2 };
const oldRow = { id: 7, status: 'new', total: '42.50' };
const newRow = { id: 7, status: 'shipped', total: '42.50' };

describe('change records', () => {
  it('MODIFY with NEW_AND_OLD_IMAGES has both images, typed', () => {
    const r = changeRecord(source('NEW_AND_OLD_IMAGES'), { tag: 'update', relation, key: null, old: oldRow, new: newRow }, txn);
    expect(r?.record).toMatchObject({
      eventName: 'MODIFY',
      eventSource: 'aws:dynamodb',
      dynamodb: {
        Keys: { id: { N: '7' } },
        OldImage: { id: { N: '7' }, status: { S: 'new' }, total: { N: '42.50' } },
        NewImage: { id: { N: '7' }, status: { S: 'shipped' }, total: { N: '42.50' } },
        ApproximateCreationDateTime: 1764547200.123,
        StreamViewType: 'NEW_AND_OLD_IMAGES',
      },
    });
    expect(r?.partitionKey).toBe('[{"N":"7"}]');
  });

  it('KEYS_ONLY and NEW_IMAGE leave the images they do not ask for out', () => {
    const keys = changeRecord(source('KEYS_ONLY'), { tag: 'update', relation, key: null, old: oldRow, new: newRow }, txn)?.record as { dynamodb: object };
    expect(Object.keys(keys.dynamodb).sort()).toEqual(['ApproximateCreationDateTime', 'Keys', 'SequenceNumber', 'SizeBytes', 'StreamViewType']);
    const ins = changeRecord(source('OLD_IMAGE'), { tag: 'insert', relation, new: newRow }, txn)?.record as { eventName: string; dynamodb: object };
    expect(ins.eventName).toBe('INSERT');
    expect(ins.dynamodb).not.toHaveProperty('NewImage');
    expect(ins.dynamodb).not.toHaveProperty('OldImage');
  });

  it('a delete under REPLICA IDENTITY DEFAULT gives the keys of the removed row', () => {
    const r = changeRecord(source('NEW_IMAGE'), { tag: 'delete', relation, key: { id: 7 }, old: null }, txn)?.record as { eventName: string; dynamodb: { Keys: unknown } };
    expect(r.eventName).toBe('REMOVE');
    expect(r.dynamodb.Keys).toEqual({ id: { N: '7' } });
    expect(r.dynamodb).not.toHaveProperty('OldImage');
  });

  it('a change of another table is not the source\'s', () => {
    expect(changeRecord(source('KEYS_ONLY'), { tag: 'insert', relation: { ...relation, name: 'other' }, new: newRow }, txn)).toBeNull();
  });

  it('sequence numbers grow with the commit LSN, then the place in the transaction', () => {
    expect(changeSequenceNumber('0/16A0F10', 2)).toBe(`${String(0x16a0f10).padStart(20, '0')}000002`);
    expect(changeSequenceNumber('1/0', 0) > changeSequenceNumber('0/FFFFFFFF', 999_999)).toBe(true);
  });

  it('attribute values by type', () => {
    expect(attributeValue(null)).toEqual({ NULL: true });
    expect(attributeValue(true)).toEqual({ BOOL: true });
    expect(attributeValue(Buffer.from('hi'))).toEqual({ B: 'aGk=' });
    expect(attributeValue({ a: [1, 'x'] })).toEqual({ M: { a: { L: [{ N: '1' }, { S: 'x' }] } } });
    expect(attributeValue('12345678901234567890', 'int8')).toEqual({ N: '12345678901234567890' });
  });

  it('old images need REPLICA IDENTITY FULL; keys need DEFAULT or FULL', () => {
    expect(whyNotReplicaIdentity('NEW_AND_OLD_IMAGES', 'd')).toMatch(/REPLICA IDENTITY FULL/);
    expect(whyNotReplicaIdentity('OLD_IMAGE', 'f')).toBeNull();
    expect(whyNotReplicaIdentity('KEYS_ONLY', 'd')).toBeNull();
    expect(whyNotReplicaIdentity('NEW_IMAGE', 'n')).toMatch(/DEFAULT/);
    expect(whyNotReplicaIdentity('KEYS_ONLY', 'i')).toMatch(/DEFAULT/);
  });
});
