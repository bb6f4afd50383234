def test_one_report_end_to_end(infobip, work, api):
    body = {"results": [{"messageId": "m1", "bulkId": "b1", "to": "41793026727",
                         "sentAt": "2015-02-12T09:51:43.123+0100", "doneAt": "2015-02-12T09:51:43.127+0100",
                         "price": {"pricePerMessage": 0.01, "currency": "EUR"},
                         "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"},
                         "error": {"groupId": 0, "groupName": "Ok", "id": 0}}]}
    resp = infobip.dlr(body)
    assert resp.status_code == 200, resp.json
    work()
    got = api.get("/api/messages/m1")
    assert got.status_code == 200, got.json
    print(got.json)
    print(api.get("/api/bulks/b1").json)
    print(api.get("/api/messages", bulkId="b1").json)
